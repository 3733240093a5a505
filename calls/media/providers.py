"""A Media Streams persona's speech providers: its settings, with keys read from the environment
at call time (never stored), turned into the plain configs agents/stt and agents/tts take."""

from __future__ import annotations

from django.conf import settings

from agents.keys import api_key
from agents.models import Persona
from agents.stt import SpeechToText, SttConfig, stt_for
from agents.tts import TextToSpeech, TtsConfig, tts_for
from calls.media.vad import VadSettings

_DEFAULT_KEYS = {
    "together": "TOGETHER_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
    "cartesia": "CARTESIA_API_KEY",
}


def _key(variable: str, provider: str) -> str:
    if variable:
        return api_key(variable)
    default = _DEFAULT_KEYS.get(provider)
    return getattr(settings, default, "") if default else ""


def speech_to_text(persona: Persona) -> SpeechToText:
    return stt_for(
        SttConfig(
            provider=persona.stt_provider,
            model=persona.stt_model,
            language=persona.language.split("-")[0],
            api_key=_key(persona.stt_api_key_env, persona.stt_provider),
            base_url=persona.stt_base_url,
        )
    )


def text_to_speech(persona: Persona) -> TextToSpeech:
    return tts_for(
        TtsConfig(
            provider=persona.stream_tts_provider,
            model=persona.stream_tts_model,
            voice=persona.stream_voice,
            api_key=_key(persona.stream_tts_api_key_env, persona.stream_tts_provider),
            base_url=persona.stream_tts_base_url,
        )
    )


def fallback_voice() -> TextToSpeech:
    """The voice that carries on when the persona's provider fails mid-call: offline, no key."""
    return tts_for(TtsConfig(provider="demo"))


def vad_settings(persona: Persona) -> VadSettings:
    return VadSettings(
        start_threshold=persona.vad_start_threshold,
        end_threshold=persona.vad_end_threshold,
        min_speech_ms=persona.vad_min_speech_ms,
        silence_ms=persona.vad_silence_ms,
        barge_in_threshold=persona.vad_barge_in_threshold,
        barge_in_windows=persona.vad_barge_in_windows,
    )
