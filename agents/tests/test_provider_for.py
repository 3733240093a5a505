"""Which provider speaks for a persona, with which key and endpoint."""

from __future__ import annotations

import logging

import pytest

from agents.llm import provider_for
from agents.llm.anthropic import AnthropicProvider
from agents.llm.demo import DemoProvider
from agents.llm.openai import OpenAIProvider
from agents.models import Persona
from calls.engine.reply import ReplyStream
from fakes.replies import stream_reply


def persona(**fields: object) -> Persona:
    return Persona(name="Desk", slug="desk", system_prompt="You answer the phone.", **fields)


@pytest.fixture(autouse=True)
def keys(settings, monkeypatch):
    settings.ANTHROPIC_API_KEY = "global-anthropic"
    settings.ANTHROPIC_BASE_URL = ""
    settings.OPENAI_API_KEY = "global-openai"
    settings.OPENAI_BASE_URL = ""
    monkeypatch.delenv("ACME_KEY", raising=False)


async def test_the_demo_persona_gets_the_demo_model_even_with_keys():
    assert isinstance(provider_for(persona(llm_provider=Persona.LlmProvider.DEMO)), DemoProvider)


async def test_claude_uses_the_global_key_and_endpoint(settings):
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9/"
    provider = provider_for(persona())
    assert isinstance(provider, AnthropicProvider)
    assert provider.client.api_key == "global-anthropic"
    assert str(provider.client.base_url) == "http://127.0.0.1:9/"


async def test_claude_reads_the_personas_own_key_variable_and_base_url(monkeypatch):
    monkeypatch.setenv("ACME_KEY", "acme-anthropic")
    provider = provider_for(persona(llm_api_key_env="ACME_KEY", llm_base_url="http://127.0.0.1:8/"))
    assert isinstance(provider, AnthropicProvider)
    assert provider.client.api_key == "acme-anthropic"
    assert str(provider.client.base_url) == "http://127.0.0.1:8/"


async def test_claude_with_no_key_anywhere_is_the_silent_embedded_demo(settings, caplog):
    settings.ANTHROPIC_API_KEY = ""
    with caplog.at_level(logging.WARNING):
        assert isinstance(provider_for(persona()), DemoProvider)
    assert caplog.text == ""


async def test_a_named_key_variable_that_is_unset_falls_back_to_the_demo_model_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        provider = provider_for(persona(llm_api_key_env="ACME_KEY"))
    assert isinstance(provider, DemoProvider)  # never silently billed to the global key
    assert "ACME_KEY is not set" in caplog.text


async def test_openai_compatible_uses_openai_api_key_and_the_default_endpoint():
    provider = provider_for(persona(llm_provider=Persona.LlmProvider.OPENAI, llm_model="gpt-test"))
    assert isinstance(provider, OpenAIProvider)
    assert provider.client.api_key == "global-openai"
    assert str(provider.client.base_url) == "https://api.openai.com/v1/"


async def test_openai_compatible_reads_the_personas_key_variable_and_base_url(monkeypatch):
    monkeypatch.setenv("ACME_KEY", "acme-together")
    provider = provider_for(
        persona(
            llm_provider=Persona.LlmProvider.OPENAI,
            llm_api_key_env="ACME_KEY",
            llm_base_url="https://api.together.example/v1",
        )
    )
    assert isinstance(provider, OpenAIProvider)
    assert provider.client.api_key == "acme-together"
    assert str(provider.client.base_url) == "https://api.together.example/v1/"


async def test_a_local_server_needs_no_key(settings):
    settings.OPENAI_API_KEY = ""
    provider = provider_for(
        persona(llm_provider=Persona.LlmProvider.OPENAI, llm_base_url="http://localhost:11434/v1")
    )
    assert isinstance(provider, OpenAIProvider)
    assert provider.client.api_key == "unused"
    assert str(provider.client.base_url) == "http://localhost:11434/v1/"


async def test_openai_compatible_with_no_key_and_no_endpoint_falls_back_to_the_demo_loudly(settings, caplog):
    settings.OPENAI_API_KEY = ""
    with caplog.at_level(logging.WARNING):
        provider = provider_for(persona(llm_provider=Persona.LlmProvider.OPENAI))
    assert isinstance(provider, DemoProvider)
    assert "OPENAI_API_KEY is not set" in caplog.text


async def test_the_picked_openai_provider_streams_from_the_configured_server(fake_openai):
    fake_openai.reply_with(["Hi", " there", "."])
    tokens: list[str] = []

    async def sink(token: str) -> None:
        tokens.append(token)

    provider = provider_for(persona(llm_provider=Persona.LlmProvider.OPENAI, llm_model="local"))
    await stream_reply(
        provider,
        persona=persona(llm_model="local"),
        messages=[{"role": "user", "content": "Hi"}],
        reply=ReplyStream(sink),
    )

    assert tokens == ["Hi", " there", "."]
    assert fake_openai.headers[0]["Authorization"] == "Bearer test-openai-key"
