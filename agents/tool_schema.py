"""What a persona's HTTP tool may be called and what its arguments schema must be.

Both providers take a tool's arguments as a JSON Schema of an object; a schema they would reject
(or a typo'd one) is refused in the admin rather than failing every reply of a live call.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

# The engine's built-in tools (calls/engine/tools.py; a test keeps the two in step): a persona's
# tool of the same name would shadow them.
BUILT_IN_TOOL_NAMES = frozenset({"end_call", "transfer_to_human", "switch_language"})

# What both Anthropic and OpenAI accept as a function name, lower-case so names read alike.
tool_name_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{0,63}$",
    "Use lower-case letters, digits and underscores, starting with a letter, e.g. check_order.",
)


def empty_object_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


def validate_arguments_schema(schema: Any) -> None:
    """A valid JSON Schema (draft 2020-12) describing a JSON object."""
    if not isinstance(schema, dict):
        raise ValidationError('The arguments schema must be a JSON object, e.g. {"type": "object"}.')
    if schema.get("type") != "object":
        raise ValidationError('The arguments schema must describe an object: "type": "object".')
    if not isinstance(schema.get("properties", {}), dict):
        raise ValidationError('"properties" must map each argument\'s name to its schema.')
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the schema"
        raise ValidationError(f"Not a valid JSON Schema at {where}: {exc.message}") from exc
