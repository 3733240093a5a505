"""LLM providers: one module per vendor behind one streaming interface (base.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings

from agents.keys import api_key
from agents.llm.base import ChatMessage, LLMProvider, ModelRequest, ProviderError, ToolSpec
from agents.models import Persona

__all__ = ["LLMProvider", "ModelRequest", "ProviderError", "provider_for", "request_for"]

logger = logging.getLogger(__name__)

# Local servers (Ollama, vLLM) take no key, but the SDK refuses to send a request without one.
NO_KEY = "unused"


def provider_for(persona: Persona) -> LLMProvider:
    """The provider that speaks for `persona`; the offline demo model when it has no key to use."""
    if persona.llm_provider == Persona.LlmProvider.DEMO:
        from agents.llm.demo import DemoProvider

        return DemoProvider()
    if persona.llm_provider == Persona.LlmProvider.OPENAI:
        from agents.llm.openai import OpenAIProvider

        base_url = persona.llm_base_url or settings.OPENAI_BASE_URL
        api_key = _api_key(persona, settings.OPENAI_API_KEY) or (NO_KEY if base_url else "")
        if not api_key:
            return _demo_instead(persona, "OPENAI_API_KEY")
        return OpenAIProvider.shared(api_key=api_key, base_url=base_url)
    from agents.llm.anthropic import AnthropicProvider

    api_key = _api_key(persona, settings.ANTHROPIC_API_KEY)
    if not api_key:
        return _demo_instead(persona, "ANTHROPIC_API_KEY")
    return AnthropicProvider.shared(
        api_key=api_key, base_url=persona.llm_base_url or settings.ANTHROPIC_BASE_URL
    )


def request_for(
    persona: Persona,
    messages: list[ChatMessage],
    *,
    system: str | None = None,
    tools: Sequence[ToolSpec] = (),
) -> ModelRequest:
    """The request for one reply of `persona`: its model settings, copied into plain fields."""
    return ModelRequest(
        model=persona.llm_model,
        system=persona.system_prompt if system is None else system,
        messages=messages,
        max_tokens=persona.max_tokens,
        temperature=persona.temperature,
        tools=tools,
        speaker=persona.name,
    )


def _api_key(persona: Persona, default: str) -> str:
    """The persona's own key variable when it names one (read at call time, never stored), else `default`."""
    if persona.llm_api_key_env:
        return api_key(persona.llm_api_key_env)
    return default


def _demo_instead(persona: Persona, default_variable: str) -> LLMProvider:
    from agents.llm.demo import DemoProvider

    # The embedded run (Claude, no key anywhere) is a demo on purpose; anything else is a mistake.
    if persona.llm_api_key_env or persona.llm_provider != Persona.LlmProvider.ANTHROPIC:
        variable = persona.llm_api_key_env or default_variable
        logger.warning("persona %s: %s is not set; the offline demo model answers", persona.slug, variable)
    return DemoProvider()
