"""A persona's HTTP tools: what the model refuses, how staff add them in the admin, and how live
calls get them (from the persona directory, never a query on the event loop)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from agents import directory
from agents.models import Persona, PersonaTool
from agents.services import persona_duplicate
from agents.tests.test_admin import management_form, persona_form
from agents.tool_schema import BUILT_IN_TOOL_NAMES
from calls.engine.tools import END_CALL, SWITCH_LANGUAGE, TRANSFER, tools_for

pytestmark = pytest.mark.django_db

ORDER_SCHEMA = {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}


def tool(persona: Persona, **fields) -> PersonaTool:
    values = {
        "persona": persona,
        "name": "check_order",
        "description": "Looks an order up by its number.",
        "parameters": ORDER_SCHEMA,
        "url": "https://orders.example.com/status",
    }
    return PersonaTool(**(values | fields))


def errors(instance: PersonaTool) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        instance.full_clean()
    return raised.value.message_dict


def test_a_well_formed_tool_is_valid_and_has_safe_defaults(default_persona):
    instance = tool(default_persona)
    instance.full_clean()
    instance.save()
    assert (instance.method, instance.timeout_seconds, instance.cancellable, instance.is_active) == (
        "POST",
        5.0,
        True,
        True,
    )
    assert default_persona.tool_filler_line == "One moment, please."
    assert default_persona.tool_filler_after_seconds == 1.5


def test_the_built_in_names_are_the_engines():
    assert {END_CALL, TRANSFER, SWITCH_LANGUAGE} == BUILT_IN_TOOL_NAMES


@pytest.mark.parametrize("name", ["end_call", "transfer_to_human", "switch_language"])
def test_a_tool_may_not_shadow_a_built_in_one(default_persona, name):
    assert "built-in" in str(errors(tool(default_persona, name=name)))
    with pytest.raises(IntegrityError), transaction.atomic():
        tool(default_persona, name=name).save()  # the database refuses it too


@pytest.mark.parametrize("name", ["Check order", "check-order", "1st", "", "x" * 65])
def test_a_tool_name_is_a_function_name(default_persona, name):
    assert "name" in errors(tool(default_persona, name=name))


def test_names_are_unique_per_persona_only(default_persona, other_persona):
    tool(default_persona).save()
    tool(other_persona).full_clean()
    assert "The persona has a tool of this name already." in str(errors(tool(default_persona)))


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        (["order"], "must be a JSON object"),
        ({"type": "string"}, '"type": "object"'),
        ({"type": "object", "properties": []}, "properties"),
        (
            {"type": "object", "properties": {"n": {"type": "integr"}}},
            "Not a valid JSON Schema at properties/n/type",
        ),
    ],
)
def test_the_arguments_schema_must_describe_an_object(default_persona, schema, says):
    assert says in " ".join(errors(tool(default_persona, parameters=schema))["parameters"])


@pytest.mark.parametrize("timeout", [0.1, 31.0])
def test_the_timeout_is_bounded(default_persona, timeout):
    assert "timeout_seconds" in errors(tool(default_persona, timeout_seconds=timeout))


@pytest.mark.parametrize("variable", ["SECRET_KEY", "TWILIO_AUTH_TOKEN", "DATABASE_URL", "SMTP_PASSWORD"])
def test_the_authorization_variable_is_never_a_server_secret(default_persona, variable):
    assert "server's own secrets" in str(errors(tool(default_persona, auth_header_env=variable)))


def test_the_authorization_variable_is_a_name_not_a_value(default_persona):
    assert "auth_header_env" in errors(tool(default_persona, auth_header_env="Bearer abc123"))


def test_only_http_urls(default_persona):
    assert "url" in errors(tool(default_persona, url="file:///etc/passwd"))


def test_staff_add_a_tool_inline_on_the_persona_page(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    html = admin_client.get(url).content.decode()
    assert "HTTP tools the model may call" in html and ">HTTP tools<" in html
    row = {
        "http_tools-0-name": "book_table",
        "http_tools-0-description": "Books a table.",
        "http_tools-0-parameters": '{"type": "object", "properties": {"time": {"type": "string"}}}',
        "http_tools-0-method": "POST",
        "http_tools-0-url": "https://bookings.example.com/book",
        "http_tools-0-timeout_seconds": "8",
        "http_tools-0-auth_header_env": "BOOKINGS_AUTH",
        "http_tools-0-is_active": "on",
        # cancellable unticked: a booking runs to completion
    }
    form = (
        persona_form(default_persona, tool_filler_line="Let me check.")
        | management_form("http_tools", 1)
        | row
    )
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    [saved] = PersonaTool.objects.filter(persona=default_persona)
    assert (saved.name, saved.method, saved.timeout_seconds, saved.cancellable) == (
        "book_table",
        "POST",
        8,
        False,
    )
    assert saved.parameters == {"type": "object", "properties": {"time": {"type": "string"}}}
    default_persona.refresh_from_db()
    assert default_persona.tool_filler_line == "Let me check."


def test_a_bad_schema_in_the_admin_is_refused_with_the_reason(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    row = {
        "http_tools-0-name": "lookup",
        "http_tools-0-description": "Looks something up.",
        "http_tools-0-parameters": '{"type": "array"}',
        "http_tools-0-method": "GET",
        "http_tools-0-url": "https://example.com/lookup",
        "http_tools-0-timeout_seconds": "5",
    }
    response = admin_client.post(url, persona_form(default_persona) | management_form("http_tools", 1) | row)
    assert response.status_code == 200
    assert "The arguments schema must describe an object" in response.content.decode()
    assert not PersonaTool.objects.exists()


def test_live_calls_get_the_active_tools_with_the_persona(default_persona):
    tool(default_persona).save()
    tool(default_persona, name="old_lookup", is_active=False).save()
    entry = directory.persona_entry(default_persona.pk)
    assert [t.name for t in entry.http_tools] == ["check_order"]
    specs = tools_for(entry.persona, [entry.persona.language])
    assert specs[-1].name == "check_order" and specs[-1].parameters == ORDER_SCHEMA
    assert specs[-1].description == "Looks an order up by its number."

    # An edit is heard (the saving signal), and the next load has it.
    tool(default_persona, name="new_lookup").save()
    entry = directory.persona_entry(default_persona.pk)
    assert [t.name for t in directory.http_tools(entry.persona)] == ["check_order", "new_lookup"]


def test_a_duplicated_persona_keeps_its_tools(default_persona):
    tool(default_persona, cancellable=False, auth_header_env="ORDERS_AUTH").save()
    copy = persona_duplicate(persona=default_persona)
    [copied] = copy.http_tools.all()
    assert (copied.name, copied.cancellable, copied.auth_header_env) == ("check_order", False, "ORDERS_AUTH")
    assert default_persona.http_tools.count() == 1
