"""Together's realtime TTS client against the fake Together speech websocket, over the wire."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from agents.tts.base import TtsError
from agents.tts.together import TogetherTts
from fakes.realtime_tts_server import TEST_TIMEOUTS, FakeTogetherTts, audio_positions, audio_tags

# The fake servers' fixtures (fake_together, together_tts, fake_cartesia, cartesia_tts).


async def collect(stream: AsyncIterator[bytes], timeout: float = 5) -> list[bytes]:
    async with asyncio.timeout(timeout):
        return [chunk async for chunk in stream]


def assert_whole(pcm: bytes, fake: FakeTogetherTts, n: int) -> None:
    """`pcm` is exactly the n-th synthesis' audio: its tag only, every sample, in order."""
    synthesis = fake.syntheses[n]
    assert len(pcm) == synthesis.samples * 2
    assert audio_tags(pcm) == {synthesis.value}
    positions = audio_positions(pcm)
    assert positions == [n & 0xFFFF for n in range(len(positions))]


async def test_audio_is_as_long_as_the_text_and_whole(together_tts, fake_together):
    short = b"".join(await collect(together_tts.synthesize("Hi there.")))
    long = b"".join(await collect(together_tts.synthesize("This sentence is quite a bit longer.")))

    assert fake_together.texts == ["Hi there.", "This sentence is quite a bit longer."]
    assert_whole(short, fake_together, 0)
    assert_whole(long, fake_together, 1)
    # 60 ms a character at 24 kHz, PCM16
    assert len(short) == round(len("Hi there.") * 0.06 * 24000) * 2
    assert together_tts.sample_rate == 24000
    assert len(fake_together.connections) == 1  # one connection for the call


async def test_sends_key_model_voice_and_the_text(fake_together):
    tts = TogetherTts(
        api_key=fake_together.api_key,
        model="some/model",
        voice="bf_emma",
        base_url=fake_together.base_url,
        done_grace=0,
    )
    try:
        await collect(tts.synthesize("Hello."))
    finally:
        await tts.close()

    connection = fake_together.connections[0]
    assert connection.headers["authorization"] == f"Bearer {fake_together.api_key}"
    assert connection.query == {
        "model": "some/model",
        "voice": "bf_emma",
        "response_format": "pcm",
        "sample_rate": "24000",
    }
    assert fake_together.messages == [
        {"type": "input_text_buffer.append", "text": "Hello."},
        {"type": "input_text_buffer.commit"},
    ]
    assert tts.session["voice"] == "bf_emma"


async def test_defaults_to_kokoro_af_heart(together_tts, fake_together):
    await together_tts.start()
    assert fake_together.connections[0].query["model"] == "hexgrad/Kokoro-82M"
    assert fake_together.connections[0].query["voice"] == "af_heart"


async def test_first_chunk_arrives_while_the_rest_is_still_being_synthesised(together_tts, fake_together):
    fake_together.hold_after(1)
    stream = together_tts.synthesize("A sentence long enough for several chunks.")
    async with asyncio.timeout(5):
        first = await anext(stream)
    await fake_together.wait_until(fake_together.holding.is_set)
    synthesis = fake_together.syntheses[0]
    assert synthesis.chunks_sent == 1 and not synthesis.completed
    assert audio_tags(first) == {synthesis.value}

    fake_together.release()
    rest = await collect(stream)
    assert len(rest) > 1
    assert_whole(first + b"".join(rest), fake_together, 0)


async def test_interrupt_ends_the_synthesis_and_none_of_its_audio_reaches_the_next(
    together_tts, fake_together
):
    fake_together.hold_after(2)
    stream = together_tts.synthesize("The first answer that the caller talks over.")
    async with asyncio.timeout(5):
        await anext(stream)

    await together_tts.interrupt()
    async with asyncio.timeout(1):
        assert [chunk async for chunk in stream] == []
    await fake_together.wait_until(lambda: fake_together.cancels == 1)
    assert fake_together.messages[-1] == {"type": "input_text_buffer.clear"}

    # Like the real server, the fake keeps speaking the text it was processing after a clear.
    fake_together.release()
    second = b"".join(await collect(together_tts.synthesize("Second.")))
    assert_whole(second, fake_together, 1)
    # The late audio died with the first connection; the second was opened for the next sentence.
    await fake_together.wait_until(fake_together.connections[0].closed.is_set)
    assert len(fake_together.connections) == 2


async def test_interrupt_wakes_a_caller_waiting_for_audio(together_tts, fake_together):
    fake_together.hold_after(1)
    got: list[bytes] = []

    async def play() -> None:
        async for chunk in together_tts.synthesize("Waiting for the rest of this sentence."):
            got.append(chunk)

    player = asyncio.create_task(play())
    await fake_together.wait_until(fake_together.holding.is_set)
    await fake_together.wait_until(lambda: fake_together.syntheses[0].chunks_sent == 1)
    await together_tts.interrupt()
    async with asyncio.timeout(1):
        await player
    assert len(got) <= 1
    fake_together.release()


async def test_interrupting_an_idle_connection_only_clears(together_tts, fake_together):
    await together_tts.start()
    await together_tts.interrupt()
    await fake_together.wait_until(lambda: fake_together.cancels == 1)
    audio = b"".join(await collect(together_tts.synthesize("Still here.")))
    assert_whole(audio, fake_together, 0)
    assert len(fake_together.connections) == 1


async def test_a_caller_that_stops_listening_cancels_like_a_barge_in(together_tts, fake_together):
    fake_together.hold_after(1)
    stream = together_tts.synthesize("Nobody listens to the end of this.")
    async with asyncio.timeout(5):
        await anext(stream)
        await stream.aclose()
    await fake_together.wait_until(lambda: fake_together.cancels == 1)
    fake_together.release()
    assert_whole(b"".join(await collect(together_tts.synthesize("Next."))), fake_together, 1)


@pytest.mark.parametrize("mode", ["close", "drop", "error"])
async def test_a_failure_mid_synthesis_raises_and_the_next_text_reconnects(together_tts, fake_together, mode):
    fake_together.fail_next(mode, after_chunks=1)
    with pytest.raises(TtsError) as raised:
        await collect(together_tts.synthesize("This one breaks halfway."))
    if mode == "error":
        assert "fake failure" in str(raised.value)

    assert_whole(b"".join(await collect(together_tts.synthesize("Recovered."))), fake_together, 1)
    assert len(fake_together.connections) == 2


async def test_a_connection_the_server_closed_between_sentences_is_replaced(together_tts, fake_together):
    await collect(together_tts.synthesize("One."))
    fake_together.drop_connections()
    await fake_together.wait_until(fake_together.connections[0].closed.is_set)
    assert_whole(b"".join(await collect(together_tts.synthesize("Two."))), fake_together, 1)


async def test_a_silent_server_times_out(fake_together):
    fake_together.hold_after(0)
    tts = TogetherTts(
        api_key=fake_together.api_key,
        base_url=fake_together.base_url,
        **{**TEST_TIMEOUTS, "idle_timeout": 0.2},
    )
    try:
        with pytest.raises(TtsError, match="no audio"):
            await collect(tts.synthesize("Never answered."))
    finally:
        fake_together.release()
        await tts.close()


async def test_a_wrong_key_fails_at_start(fake_together):
    tts = TogetherTts(api_key="wrong", base_url=fake_together.base_url, **TEST_TIMEOUTS)
    with pytest.raises(TtsError, match="401"):
        await tts.start()
    assert fake_together.rejected == 1
    await tts.close()


async def test_a_session_the_server_refuses_fails_with_its_reason():
    fake = FakeTogetherTts(session_error="Voice 'tara' is not available").start()
    tts = TogetherTts(api_key="k", voice="tara", base_url=fake.base_url, **TEST_TIMEOUTS)
    try:
        with pytest.raises(TtsError, match="tara"):
            await collect(tts.synthesize("Hello."))
    finally:
        await tts.close()
        fake.stop()


async def test_no_server_at_all_fails_fast():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before we connect: nobody listens there
    tts = TogetherTts(api_key="k", base_url=f"ws://127.0.0.1:{port}", **TEST_TIMEOUTS)
    async with asyncio.timeout(5):
        with pytest.raises(TtsError, match="cannot connect"):
            await tts.start()


async def test_a_wav_header_and_odd_chunks_come_out_as_whole_samples():
    fake = FakeTogetherTts(wav_header=True, odd_chunks=True).start()
    tts = TogetherTts(api_key="k", base_url=fake.base_url, done_grace=0.05, **TEST_TIMEOUTS)
    try:
        chunks = await collect(tts.synthesize("Headers are not audio."))
    finally:
        await tts.close()
        fake.stop()
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    assert not chunks[0].startswith(b"RIFF")
    assert_whole(b"".join(chunks), fake, 0)


async def test_blank_text_says_nothing_and_sends_nothing(together_tts, fake_together):
    assert await collect(together_tts.synthesize("  ")) == []
    assert fake_together.connections == []


async def test_closed_synthesiser_refuses_text(together_tts):
    await together_tts.close()
    with pytest.raises(TtsError, match="closed"):
        await collect(together_tts.synthesize("Too late."))


async def test_a_new_text_cancels_one_its_caller_left_unfinished(together_tts, fake_together):
    fake_together.hold_after(1)
    stream = together_tts.synthesize("Left hanging by its caller.")
    async with asyncio.timeout(5):
        await anext(stream)
    fake_together.release()  # the rest of it is on its way: none of it may come out below
    assert_whole(b"".join(await collect(together_tts.synthesize("Next."))), fake_together, 1)
    await stream.aclose()


async def test_close_ends_a_running_synthesis_quietly(together_tts, fake_together):
    fake_together.hold_after(1)
    stream = together_tts.synthesize("The caller hangs up during this.")
    async with asyncio.timeout(5):
        await anext(stream)
    await together_tts.close()
    assert await collect(stream, timeout=1) == []
    await fake_together.wait_until(fake_together.connections[0].closed.is_set)
    fake_together.release()
