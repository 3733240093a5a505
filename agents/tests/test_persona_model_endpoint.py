"""A persona's model endpoint: provider, base URL and the name of its key variable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agents.models import Persona
from agents.tests.test_admin import persona_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "TOGETHER_KEY_2", "_PRIVATE"])
def test_key_variable_names_look_like_environment_variables(default_persona, name):
    default_persona.llm_api_key_env = name
    default_persona.full_clean()


@pytest.mark.parametrize("value", ["sk-proj-abc123", "together key", "2FA_KEY", "lower_case"])
def test_a_key_itself_is_refused(default_persona, value):
    default_persona.llm_api_key_env = value
    with pytest.raises(ValidationError) as excinfo:
        default_persona.full_clean()
    assert "Never the key itself" in str(excinfo.value.message_dict["llm_api_key_env"])


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("http://localhost:11434/v1", True),
        ("https://api.together.example/v1", True),
        ("http://10.0.0.5:8000/v1", True),
        ("ftp://models.example.com/v1", False),
        ("not a url", False),
    ],
)
def test_base_urls_are_http_or_https(default_persona, url, valid):
    default_persona.llm_base_url = url
    if valid:
        default_persona.full_clean()
    else:
        with pytest.raises(ValidationError, match="llm_base_url"):
            default_persona.full_clean()


def test_staff_point_a_persona_at_an_openai_compatible_server(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="llm_base_url"' in page and 'name="llm_api_key_env"' in page
    assert '<option value="openai">OpenAI-compatible</option>' in page

    form = persona_form(
        default_persona,
        llm_provider="openai",
        llm_model="llama3.1",
        llm_base_url="http://localhost:11434/v1",
        llm_api_key_env="OLLAMA_KEY",
    )
    response = admin_client.post(url, form)

    assert response.status_code == 302, response.content.decode()[:2000]
    default_persona.refresh_from_db()
    assert (default_persona.llm_provider, default_persona.llm_base_url, default_persona.llm_api_key_env) == (
        Persona.LlmProvider.OPENAI,
        "http://localhost:11434/v1",
        "OLLAMA_KEY",
    )


def test_the_admin_refuses_a_pasted_key(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    response = admin_client.post(url, persona_form(default_persona, llm_api_key_env="sk-live-123"))

    assert response.status_code == 200
    assert "Never the key itself" in response.content.decode()
    default_persona.refresh_from_db()
    assert default_persona.llm_api_key_env == ""
