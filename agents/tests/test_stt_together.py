"""The Together realtime client over a real websocket against the fake server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest

from agents.stt.base import SttConfig, SttError
from agents.stt.together import TogetherStt
from fakes.realtime_stt_server import FakeRealtimeStt, SttTurn

FRAME = b"\x01\x00" * 320  # 20 ms of 16 kHz PCM16


@pytest.fixture
async def stt(fake_stt: FakeRealtimeStt) -> AsyncIterator[TogetherStt]:
    client = TogetherStt(SttConfig("together", api_key="test-together-key", base_url=fake_stt.url))
    async with asyncio.timeout(5):
        await client.start()
    yield client
    async with asyncio.timeout(5):
        await client.close()


async def commit(stt: TogetherStt, timeout: float = 2.0) -> str:
    async with asyncio.timeout(timeout + 3):
        return await stt.commit(timeout)


async def test_handshake_sends_the_key_model_and_audio_format(stt, fake_stt):
    assert fake_stt.headers["Authorization"] == "Bearer test-together-key"
    assert fake_stt.headers["OpenAI-Beta"] == "realtime=v1"
    assert fake_stt.model == "openai/whisper-large-v3"
    assert fake_stt.query["input_audio_format"] == "pcm_s16le_16000"
    assert stt.sample_rate == 16000


async def test_a_configured_model_is_sent(fake_stt):
    client = TogetherStt(SttConfig("together", model="other/whisper", api_key="k", base_url=fake_stt.url))
    async with asyncio.timeout(5):
        await client.start()
        await client.close()
    assert fake_stt.model == "other/whisper"


async def test_appends_arrive_in_order_with_their_bytes(stt, fake_stt):
    chunks = [FRAME, b"\x02\x00" * 160, b"\x03\x00" * 800]
    for chunk in chunks:
        await stt.send_audio(chunk)
    await fake_stt.wait_for(lambda f: len(f.appends) == 3)
    assert fake_stt.appends == [640, 320, 1600]
    assert bytes(fake_stt.audio) == b"".join(chunks)
    assert fake_stt.invalid == []


async def test_commit_returns_the_scripted_transcript_after_its_deltas(stt, fake_stt, watch_text):
    seen = watch_text(stt)
    fake_stt.reply_with("I would like to book a table.")
    await stt.send_audio(FRAME)
    assert await commit(stt) == "I would like to book a table."
    assert fake_stt.commits == 1
    # The deltas came first, each replacing the last.
    assert seen.seen[:2] == ["I", "I would"]
    assert seen.seen[-1] == "I would like to book a table."


async def test_each_turn_gets_its_own_transcript(stt, fake_stt):
    fake_stt.reply_with("First turn.", "Second turn.")
    await stt.send_audio(FRAME)
    assert await commit(stt) == "First turn."
    await stt.send_audio(FRAME)
    assert await commit(stt) == "Second turn."
    assert fake_stt.messages == ["input_audio_buffer.append", "input_audio_buffer.commit"] * 2


async def test_segments_the_server_completed_on_its_own_open_the_turn(stt, fake_stt, watch_text):
    seen = watch_text(stt)
    fake_stt.reply_with("the rest of it.")
    await stt.send_audio(FRAME)
    fake_stt.segment("Here is part one.")
    fake_stt.segment("and", final=False)
    await seen.until("Here is part one. and")
    assert await commit(stt) == "Here is part one. the rest of it."


async def test_a_turn_that_ends_in_a_completed_segment_returns_without_a_commit(stt, fake_stt, watch_text):
    seen = watch_text(stt)
    await stt.send_audio(FRAME)
    fake_stt.segment("All done.")
    await seen.until("All done.")
    assert await commit(stt) == "All done."
    assert fake_stt.commits == 0


async def test_a_silent_turn_is_empty_without_waiting(stt, fake_stt):
    assert await commit(stt, timeout=30) == ""
    assert fake_stt.commits == 0


async def test_commit_timeout_returns_the_last_delta_and_drops_the_late_final(stt, fake_stt):
    """Documented behaviour: no final within the timeout is not an error; the turn ends with
    what the deltas said, and the final that comes later does not leak into the next turn."""
    fake_stt.queue(SttTurn("Book me a table.", hold_final=True), SttTurn("Second turn."))
    await stt.send_audio(FRAME)
    async with asyncio.timeout(3):
        started = asyncio.get_running_loop().time()
        assert await stt.commit(timeout=0.2) == "Book me a"
        assert asyncio.get_running_loop().time() - started < 1.5
    fake_stt.release()  # the late final goes out before the next turn's events
    await stt.send_audio(FRAME)
    assert await commit(stt) == "Second turn."


async def test_a_failed_transcription_keeps_the_last_delta(stt, fake_stt):
    fake_stt.queue(SttTurn("Call me back.", failed=True))
    await stt.send_audio(FRAME)
    assert await commit(stt) == "Call me"


async def test_clear_forgets_the_turn_so_far(stt, fake_stt, watch_text):
    seen = watch_text(stt)
    await stt.send_audio(FRAME)
    fake_stt.segment("cough")
    await seen.until("cough")
    await stt.clear()
    fake_stt.reply_with("Yes please.")
    await stt.send_audio(FRAME)
    assert await commit(stt) == "Yes please."
    assert fake_stt.clears == 1
    assert fake_stt.messages == [
        "input_audio_buffer.append",
        "input_audio_buffer.clear",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
    ]


async def test_a_server_that_drops_mid_turn_raises_from_the_commit(stt, fake_stt):
    fake_stt.queue(SttTurn(drop=True))
    await stt.send_audio(FRAME)
    with pytest.raises(SttError, match=r"dropped|closed"):
        await commit(stt, timeout=30)
    with pytest.raises(SttError):
        await stt.send_audio(FRAME)


async def test_a_dropped_connection_fails_the_next_call(stt, fake_stt):
    fake_stt.drop()
    with pytest.raises(SttError):
        await stt.send_audio(FRAME)  # raises here if the client has already seen the drop,
        await commit(stt, timeout=30)  # else the drop ends the commit's wait
    with pytest.raises(SttError):
        await commit(stt)
    with pytest.raises(SttError):
        await stt.clear()


async def test_an_error_event_ends_a_waiting_commit(stt, fake_stt):
    fake_stt.queue(SttTurn("Never sent.", partials=[], hold_final=True))
    await stt.send_audio(FRAME)
    task = asyncio.create_task(commit(stt, timeout=30))
    await fake_stt.wait_for(lambda f: f.commits == 1)
    fake_stt.error("buffer too small")
    assert await task == ""


async def test_a_refused_handshake_raises_stt_error(fake_stt):
    fake_stt.reject_status = 401
    client = TogetherStt(SttConfig("together", api_key="wrong", base_url=fake_stt.url))
    with pytest.raises(SttError, match="401"):
        async with asyncio.timeout(5):
            await client.start()


async def test_connection_refused_raises_stt_error():
    client = TogetherStt(SttConfig("together", api_key="k", base_url="ws://127.0.0.1:9/v1/realtime"))
    with pytest.raises(SttError):
        async with asyncio.timeout(5):
            await client.start()


async def test_a_session_that_never_gets_ready_times_out():
    fake = FakeRealtimeStt(session_created=False).start()
    try:
        client = TogetherStt(SttConfig("together", api_key="k", base_url=fake.url))
        client.connect_timeout = 0.3
        with pytest.raises(SttError):
            async with asyncio.timeout(5):
                await client.start()
    finally:
        fake.stop()


async def test_audio_is_base64_pcm(stt, fake_stt):
    assert json.loads(stt.audio_message(b"\x00\x01")) == {
        "type": "input_audio_buffer.append",
        "audio": base64.b64encode(b"\x00\x01").decode(),
    }


async def test_close_is_idempotent_and_later_calls_raise(stt):
    async with asyncio.timeout(5):
        await stt.close()
        await stt.close()
    with pytest.raises(SttError, match="closed"):
        await stt.send_audio(FRAME)
