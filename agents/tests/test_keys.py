"""A persona's key variables can name any provider's key, never one of the server's own secrets."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents.keys import api_key
from agents.models import Persona


@pytest.mark.parametrize("field", ["llm_api_key_env", "stt_api_key_env", "stream_tts_api_key_env"])
def test_a_server_secret_is_refused_as_a_key_variable(field):
    persona = Persona(name="Desk", slug="desk", system_prompt="Hi.", **{field: "TWILIO_AUTH_TOKEN"})
    with pytest.raises(ValidationError) as error:
        persona.full_clean(validate_unique=False, validate_constraints=False)
    assert field in error.value.message_dict


def test_a_secret_named_anyway_is_never_read(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "server-signing-key")
    monkeypatch.setenv("ACME_TOGETHER_KEY", "provider-key")
    assert api_key("SECRET_KEY") == ""
    assert api_key("ACME_TOGETHER_KEY") == "provider-key"
