"""Choosing a recogniser from plain settings."""

from __future__ import annotations

import logging

import pytest

from agents.stt import SttConfig, stt_for
from agents.stt.deepgram import DeepgramStt
from agents.stt.demo import DemoStt
from agents.stt.together import TogetherStt


def test_a_provider_with_a_key_gets_its_client():
    together = stt_for(SttConfig("together", api_key="k"))
    assert isinstance(together, TogetherStt)
    assert together.model == "openai/whisper-large-v3"
    assert together.url().startswith("wss://api.together.ai/v1/realtime?model=openai%2Fwhisper-large-v3")
    deepgram = stt_for(SttConfig("deepgram", model="nova-2", api_key="k"))
    assert isinstance(deepgram, DeepgramStt)
    assert deepgram.url().startswith("wss://api.deepgram.com/v1/listen?model=nova-2&")


def test_each_call_gets_its_own_instance():
    config = SttConfig("together", api_key="k")
    assert stt_for(config) is not stt_for(config)


def test_no_key_means_the_demo_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="agents.stt"):
        assert isinstance(stt_for(SttConfig("together")), DemoStt)
        assert isinstance(stt_for(SttConfig("deepgram")), DemoStt)
    assert len(caplog.records) == 2
    assert "together" in caplog.records[0].getMessage()


def test_the_demo_asked_for_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="agents.stt"):
        assert isinstance(stt_for(SttConfig("demo")), DemoStt)
        assert isinstance(stt_for(SttConfig("demo", api_key="ignored")), DemoStt)
    assert caplog.records == []


def test_an_unknown_provider_is_a_configuration_error():
    with pytest.raises(ValueError, match="whisperer"):
        stt_for(SttConfig("whisperer", api_key="k"))
