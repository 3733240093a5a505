"""Cartesia's TTS client against the fake Cartesia websocket, over the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agents.tts.base import TtsError
from agents.tts.cartesia import CartesiaTts
from fakes.realtime_tts_server import TEST_TIMEOUTS, FakeCartesiaTts, audio_positions, audio_tags

# The fake servers' fixtures (fake_together, together_tts, fake_cartesia, cartesia_tts).


async def collect(stream: AsyncIterator[bytes], timeout: float = 5) -> list[bytes]:
    async with asyncio.timeout(timeout):
        return [chunk async for chunk in stream]


def assert_whole(pcm: bytes, fake: FakeCartesiaTts, n: int) -> None:
    synthesis = fake.syntheses[n]
    assert len(pcm) == synthesis.samples * 2
    assert audio_tags(pcm) == {synthesis.value}
    positions = audio_positions(pcm)
    assert positions == [i & 0xFFFF for i in range(len(positions))]


async def test_audio_is_as_long_as_the_text_and_each_text_has_its_own_context(cartesia_tts, fake_cartesia):
    short = b"".join(await collect(cartesia_tts.synthesize("Hi.")))
    long = b"".join(await collect(cartesia_tts.synthesize("A much longer second sentence.")))

    assert_whole(short, fake_cartesia, 0)
    assert_whole(long, fake_cartesia, 1)
    assert len(long) > len(short) * 5
    first, second = fake_cartesia.messages
    assert first["context_id"] != second["context_id"]
    assert len(fake_cartesia.connections) == 1


async def test_sends_key_version_model_voice_and_format(fake_cartesia):
    tts = CartesiaTts(
        api_key=fake_cartesia.api_key, model="sonic-x", voice="voice-1", base_url=fake_cartesia.base_url
    )
    try:
        await collect(tts.synthesize("Hello."))
    finally:
        await tts.close()

    headers = fake_cartesia.connections[0].headers
    assert headers["x-api-key"] == fake_cartesia.api_key
    assert headers["cartesia-version"]
    (request,) = fake_cartesia.messages
    assert request == {
        "model_id": "sonic-x",
        "transcript": "Hello.",
        "voice": {"mode": "id", "id": "voice-1"},
        "language": "en",
        "context_id": request["context_id"],
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        "continue": False,
    }


async def test_first_chunk_arrives_while_the_rest_is_still_being_synthesised(cartesia_tts, fake_cartesia):
    fake_cartesia.hold_after(1)
    stream = cartesia_tts.synthesize("A sentence long enough for several chunks.")
    async with asyncio.timeout(5):
        first = await anext(stream)
    await fake_cartesia.wait_until(fake_cartesia.holding.is_set)
    assert fake_cartesia.syntheses[0].chunks_sent == 1

    fake_cartesia.release()
    assert_whole(first + b"".join(await collect(stream)), fake_cartesia, 0)


async def test_interrupt_cancels_the_context_and_its_late_audio_is_dropped(cartesia_tts, fake_cartesia):
    fake_cartesia.hold_after(2)
    stream = cartesia_tts.synthesize("The first answer that the caller talks over.")
    async with asyncio.timeout(5):
        await anext(stream)

    await cartesia_tts.interrupt()
    async with asyncio.timeout(1):
        assert [chunk async for chunk in stream] == []
    await fake_cartesia.wait_until(lambda: fake_cartesia.cancels == 1)
    context = fake_cartesia.syntheses[0].id
    assert fake_cartesia.messages[-1] == {"context_id": context, "cancel": True}

    # The fake sends a chunk of the cancelled context after the cancel; it must not come out here.
    second = b"".join(await collect(cartesia_tts.synthesize("Second.")))
    assert_whole(second, fake_cartesia, 1)
    assert len(fake_cartesia.connections) == 1  # contexts make a reconnect unnecessary


async def test_an_error_event_fails_that_text_only(cartesia_tts, fake_cartesia):
    fake_cartesia.fail_next("error", after_chunks=1)
    with pytest.raises(TtsError, match="fake failure"):
        await collect(cartesia_tts.synthesize("This one fails."))
    assert_whole(b"".join(await collect(cartesia_tts.synthesize("This one works."))), fake_cartesia, 1)
    assert len(fake_cartesia.connections) == 1


@pytest.mark.parametrize("mode", ["close", "drop"])
async def test_a_lost_connection_raises_and_the_next_text_reconnects(cartesia_tts, fake_cartesia, mode):
    fake_cartesia.fail_next(mode, after_chunks=1)
    with pytest.raises(TtsError, match="connection closed"):
        await collect(cartesia_tts.synthesize("This one breaks halfway."))
    assert_whole(b"".join(await collect(cartesia_tts.synthesize("Recovered."))), fake_cartesia, 1)
    assert len(fake_cartesia.connections) == 2


async def test_a_wrong_key_fails(fake_cartesia):
    tts = CartesiaTts(api_key="wrong", base_url=fake_cartesia.base_url, **TEST_TIMEOUTS)
    with pytest.raises(TtsError, match="401"):
        await collect(tts.synthesize("Hello."))
    await tts.close()
