"""Streaming speech-to-text providers: one module per vendor behind one interface (base.py)."""

from __future__ import annotations

import logging

from agents.stt.base import SpeechToText, SttConfig, SttError

__all__ = ["SpeechToText", "SttConfig", "SttError", "stt_for"]

logger = logging.getLogger(__name__)

PROVIDERS = ("together", "deepgram", "demo")


def stt_for(config: SttConfig) -> SpeechToText:
    """A fresh (unstarted) recogniser for one call; the offline demo one when there is no key."""
    provider = config.provider.lower()
    if provider not in PROVIDERS:
        raise ValueError(f"unknown speech-to-text provider {config.provider!r}; expected one of {PROVIDERS}")
    if provider != "demo" and not config.api_key:
        # Asking for a hosted recogniser and getting none is a mistake worth a line in the log.
        logger.warning(
            "no API key for the %s speech-to-text provider; the offline demo transcribes", provider
        )
        provider = "demo"
    if provider == "together":
        from agents.stt.together import TogetherStt

        return TogetherStt(config)
    if provider == "deepgram":
        from agents.stt.deepgram import DeepgramStt

        return DeepgramStt(config)
    from agents.stt.demo import DemoStt

    return DemoStt()
