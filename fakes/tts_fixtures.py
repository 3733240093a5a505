"""Pytest fixtures for the fake TTS servers and the real clients pointed at them. A test module
loads them with `pytest_plugins = ["fakes.tts_fixtures"]` until they move into a conftest.py
(importing fixtures by name instead trips ruff's F811 at every test that takes one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from agents.tts.cartesia import CartesiaTts
from agents.tts.together import TogetherTts
from fakes.realtime_tts_server import FakeCartesiaTts, FakeTogetherTts

TTS_TEST_KEY = "test-tts-key"
# Short waits: a fake answers in milliseconds, and a test of a failure must not take seconds.
TEST_TIMEOUTS = {"open_timeout": 5.0, "idle_timeout": 3.0, "send_timeout": 2.0}


@pytest.fixture
def fake_together() -> Iterator[FakeTogetherTts]:
    """A fake Together speech websocket on 127.0.0.1 that wants TTS_TEST_KEY."""
    fake = FakeTogetherTts(api_key=TTS_TEST_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
async def together_tts(fake_together: FakeTogetherTts) -> AsyncIterator[TogetherTts]:
    """The real Together client on the fake; a short done-grace keeps tests quick."""
    tts = TogetherTts(api_key=TTS_TEST_KEY, base_url=fake_together.base_url, done_grace=0.05, **TEST_TIMEOUTS)
    yield tts
    await tts.close()


@pytest.fixture
def fake_cartesia() -> Iterator[FakeCartesiaTts]:
    """A fake Cartesia TTS websocket on 127.0.0.1 that wants TTS_TEST_KEY."""
    fake = FakeCartesiaTts(api_key=TTS_TEST_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
async def cartesia_tts(fake_cartesia: FakeCartesiaTts) -> AsyncIterator[CartesiaTts]:
    tts = CartesiaTts(api_key=TTS_TEST_KEY, base_url=fake_cartesia.base_url, **TEST_TIMEOUTS)
    yield tts
    await tts.close()
