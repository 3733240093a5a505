"""The Deepgram live client over a real websocket against the fake server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agents.stt.base import SttConfig, SttError
from agents.stt.deepgram import DeepgramStt
from fakes.realtime_stt_server import FakeDeepgram, SttTurn

SECOND = b"\x01\x00" * 16000  # one second of 16 kHz PCM16


@pytest.fixture
async def stt(fake_deepgram: FakeDeepgram) -> AsyncIterator[DeepgramStt]:
    client = DeepgramStt(
        SttConfig("deepgram", language="fr", api_key="test-deepgram-key", base_url=fake_deepgram.url)
    )
    async with asyncio.timeout(5):
        await client.start()
    yield client
    async with asyncio.timeout(5):
        await client.close()


async def commit(stt: DeepgramStt, timeout: float = 2.0) -> str:
    async with asyncio.timeout(timeout + 3):
        return await stt.commit(timeout)


async def test_handshake_configures_the_stream(stt, fake_deepgram):
    assert fake_deepgram.headers["Authorization"] == "Token test-deepgram-key"
    assert fake_deepgram.query == {
        "model": "nova-3",
        "language": "fr",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "punctuate": "true",
    }


async def test_audio_goes_as_binary_frames_in_order(stt, fake_deepgram):
    chunks = [SECOND[:640], SECOND[:320], SECOND[:1600]]
    for chunk in chunks:
        await stt.send_audio(chunk)
    await fake_deepgram.wait_for(lambda f: len(f.appends) == 3)
    assert fake_deepgram.appends == [640, 320, 1600]
    assert bytes(fake_deepgram.audio) == b"".join(chunks)


async def test_commit_finalizes_and_returns_the_final(stt, fake_deepgram, watch_text):
    seen = watch_text(stt)
    fake_deepgram.reply_with("Two coffees, please.")
    await stt.send_audio(SECOND)
    assert await commit(stt) == "Two coffees, please."
    assert fake_deepgram.messages == ["audio", "Finalize"]
    assert seen.seen[:2] == ["Two", "Two coffees,"]


async def test_a_final_mid_turn_does_not_end_the_wait_for_finalize(stt, fake_deepgram, watch_text):
    seen = watch_text(stt)
    fake_deepgram.reply_with("and a tea.")
    await stt.send_audio(SECOND)
    fake_deepgram.segment("Two coffees")
    fake_deepgram.segment("and", final=False)
    await seen.until("Two coffees and")
    assert await commit(stt) == "Two coffees and a tea."


async def test_commit_timeout_returns_the_interim_text(stt, fake_deepgram):
    fake_deepgram.queue(SttTurn("Cancel my order.", hold_final=True), SttTurn("Thanks."))
    await stt.send_audio(SECOND)
    assert await commit(stt, timeout=0.2) == "Cancel my"
    fake_deepgram.release()
    await stt.send_audio(SECOND)
    assert await commit(stt) == "Thanks."


async def test_clear_ignores_results_for_audio_before_it(stt, fake_deepgram, watch_text):
    seen = watch_text(stt)
    await stt.send_audio(SECOND)
    fake_deepgram.segment("cough", final=False)
    await seen.until("cough")
    await stt.clear()
    fake_deepgram.segment("cough cough")  # covers only audio from before the clear
    fake_deepgram.reply_with("Hello?")
    await stt.send_audio(SECOND)
    assert await commit(stt) == "Hello?"


async def test_an_idle_stream_is_kept_alive(fake_deepgram):
    client = DeepgramStt(SttConfig("deepgram", api_key="k", base_url=fake_deepgram.url))
    client.keepalive_interval = 0.05
    async with asyncio.timeout(5):
        await client.start()
        await fake_deepgram.wait_for(lambda f: f.keepalives >= 2)
        await client.close()


async def test_close_sends_close_stream(stt, fake_deepgram):
    await stt.send_audio(SECOND)
    async with asyncio.timeout(5):
        await stt.close()
    await fake_deepgram.wait_for(lambda f: "CloseStream" in f.messages)
    assert fake_deepgram.messages == ["audio", "CloseStream"]


async def test_a_drop_mid_turn_raises(stt, fake_deepgram):
    fake_deepgram.queue(SttTurn(drop=True))
    await stt.send_audio(SECOND)
    with pytest.raises(SttError):
        await commit(stt, timeout=30)


async def test_a_rejected_key_raises_at_start(fake_deepgram):
    fake_deepgram.reject_status = 401
    client = DeepgramStt(SttConfig("deepgram", api_key="wrong", base_url=fake_deepgram.url))
    with pytest.raises(SttError, match="401"):
        async with asyncio.timeout(5):
            await client.start()
    with pytest.raises(SttError):
        await client.send_audio(SECOND)
