"""tts_for: the synthesiser a config asks for; the demo voice when it has no key."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agents.tts import TtsConfig, tts_for
from agents.tts.cartesia import CartesiaTts
from agents.tts.demo import DemoTts
from agents.tts.together import TogetherTts

# The fake servers' fixtures (fake_together, together_tts, fake_cartesia, cartesia_tts).


def test_together_with_a_key():
    tts = tts_for(TtsConfig("together", model="m", voice="v", api_key="k", base_url="ws://127.0.0.1:1"))
    assert isinstance(tts, TogetherTts)
    assert (tts.model, tts.voice, tts.api_key, tts.base_url) == ("m", "v", "k", "ws://127.0.0.1:1")
    assert tts.sample_rate == 24000


def test_together_defaults():
    tts = tts_for(TtsConfig("together", api_key="k"))
    assert isinstance(tts, TogetherTts)
    assert tts.url().startswith("wss://api.together.ai/v1/audio/speech/websocket?model=hexgrad%2FKokoro-82M")
    assert "voice=af_heart" in tts.url()


def test_cartesia_with_a_key():
    tts = tts_for(TtsConfig("Cartesia", voice="v", api_key="k"))
    assert isinstance(tts, CartesiaTts)
    assert tts.voice == "v" and tts.url() == "wss://api.cartesia.ai/tts/websocket"


@pytest.mark.parametrize("provider", ["together", "cartesia"])
def test_no_key_means_the_demo_voice_and_a_warning(provider, caplog):
    with caplog.at_level(logging.WARNING, logger="agents.tts"):
        tts = tts_for(TtsConfig(provider, voice="af_heart"))
    assert isinstance(tts, DemoTts)
    assert tts.voice == "en-us"  # a vendor's voice name means nothing to espeak-ng
    assert "no API key" in caplog.text


def test_the_demo_asked_for_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="agents.tts"):
        tts = tts_for(TtsConfig("demo", voice="en-gb"))
    assert isinstance(tts, DemoTts) and tts.voice == "en-gb"
    assert caplog.text == ""


def test_an_unknown_provider_falls_back_to_the_demo_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="agents.tts"):
        assert isinstance(tts_for(TtsConfig("acme", api_key="k")), DemoTts)
    assert "unknown TTS provider" in caplog.text


@pytest.mark.parametrize(
    "base_url",
    [
        "wss://tts.example.com",
        "https://tts.example.com/",
        "wss://tts.example.com/v1/audio/speech/websocket",
    ],
)
def test_a_base_url_is_taken_as_pasted(base_url):
    tts = tts_for(TtsConfig("together", api_key="k", base_url=base_url))
    assert tts.url().startswith("wss://tts.example.com/v1/audio/speech/websocket?")


def test_the_key_stays_out_of_the_config_repr():
    assert "secret" not in repr(TtsConfig("together", api_key="secret"))


async def test_the_configured_client_speaks_over_the_wire(fake_together):
    tts = tts_for(TtsConfig("together", api_key=fake_together.api_key, base_url=fake_together.base_url))
    try:
        async with asyncio.timeout(5):
            audio = b"".join([chunk async for chunk in tts.synthesize("Configured.")])
    finally:
        await tts.close()
    assert len(audio) == fake_together.syntheses[0].samples * 2
