"""Text-to-speech providers for the Media Streams transport: one module per vendor behind one
streaming interface (base.py). Plain config in, no Django: the caller resolves keys and URLs."""

from __future__ import annotations

import logging

from agents.tts.base import TextToSpeech, TtsConfig, TtsError

__all__ = ["PROVIDERS", "TextToSpeech", "TtsConfig", "TtsError", "tts_for"]

logger = logging.getLogger(__name__)

PROVIDERS = ("together", "cartesia", "demo")


def tts_for(config: TtsConfig) -> TextToSpeech:
    """A new synthesiser for one call; the offline demo voice when there is no key to use."""
    provider = config.provider.strip().lower()
    if provider == "together" and config.api_key:
        from agents.tts.together import TogetherTts

        return TogetherTts(
            api_key=config.api_key, model=config.model, voice=config.voice, base_url=config.base_url
        )
    if provider == "cartesia" and config.api_key:
        from agents.tts.cartesia import CartesiaTts

        return CartesiaTts(
            api_key=config.api_key, model=config.model, voice=config.voice, base_url=config.base_url
        )
    from agents.tts.demo import DemoTts

    # A demo asked for is a demo on purpose; anything else falling back to it is a mistake to
    # report, but not one that should leave a caller in silence.
    if provider not in PROVIDERS:
        logger.warning("unknown TTS provider %r; the offline demo voice speaks", config.provider)
    elif provider != "demo":
        logger.warning("no API key for TTS provider %s; the offline demo voice speaks", provider)
    # A vendor's voice name means nothing to espeak-ng: only a demo config's voice is passed on.
    return DemoTts(voice=config.voice if provider == "demo" else "")
