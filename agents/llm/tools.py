"""Tool calls arrive in fragments (an id and a name, then the arguments JSON in pieces), keyed by
their position in the reply; this puts them back together for any provider."""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field

from agents.llm.base import ProviderError, ToolCall


@dataclass(slots=True)
class _Parts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    call: ToolCall | None = None


class ToolCallAssembler:
    def __init__(self) -> None:
        self._parts: dict[Hashable, _Parts] = {}

    def start(self, key: Hashable, *, id: str = "", name: str = "") -> None:
        parts = self._parts.setdefault(key, _Parts())
        # Some servers repeat the id and name on every fragment: keep them, never concatenate.
        parts.id = id or parts.id
        parts.name = name or parts.name

    def extend(self, key: Hashable, fragment: str) -> None:
        self._parts.setdefault(key, _Parts()).arguments.append(fragment)

    def finish(self, key: Hashable) -> None:
        """The call at `key` is complete: parse it now (a no-op for keys that are not tool calls)."""
        parts = self._parts.get(key)
        if parts is not None and parts.call is None:
            parts.call = _parse(parts)

    def calls(self) -> list[ToolCall]:
        """Every call, in the order they started."""
        for key in self._parts:
            self.finish(key)
        return [parts.call for parts in self._parts.values() if parts.call is not None]


def _parse(parts: _Parts) -> ToolCall:
    if not parts.name:
        raise ProviderError(f"tool call {parts.id or '?'} has no name")
    raw = "".join(parts.arguments).strip() or "{}"  # a tool without parameters may send nothing
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProviderError(f"tool call {parts.name}: arguments are not JSON: {raw[:200]!r}") from exc
    if not isinstance(arguments, dict):
        raise ProviderError(f"tool call {parts.name}: arguments are not a JSON object: {raw[:200]!r}")
    return ToolCall(name=parts.name, arguments=arguments, id=parts.id)
