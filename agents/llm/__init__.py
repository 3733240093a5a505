"""LLM providers: one module per vendor behind one streaming interface (base.py)."""

from __future__ import annotations

from django.conf import settings

from agents.llm.base import LLMProvider, ProviderError, ReplyStream
from agents.models import Persona

__all__ = ["LLMProvider", "ProviderError", "ReplyStream", "provider_for"]


def provider_for(persona: Persona) -> LLMProvider:
    """The provider that speaks for `persona`; the offline demo model when no key is configured."""
    from agents.llm.demo import DemoProvider

    if persona.llm_provider == Persona.LlmProvider.DEMO or not settings.ANTHROPIC_API_KEY:
        return DemoProvider()
    from agents.llm.anthropic import AnthropicProvider

    return AnthropicProvider.shared(api_key=settings.ANTHROPIC_API_KEY, base_url=settings.ANTHROPIC_BASE_URL)
