"""The offline demo voice: espeak-ng when installed, a tone otherwise. No network."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest

from agents.tts.base import TtsError
from agents.tts.demo import CHARS_PER_SECOND, DemoTts

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")


async def collect(stream: AsyncIterator[bytes], timeout: float = 10) -> list[bytes]:
    async with asyncio.timeout(timeout):
        return [chunk async for chunk in stream]


def peak(pcm: bytes) -> int:
    return max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2))


async def test_the_tone_lasts_as_long_as_the_text_would_take_to_say():
    tts = DemoTts(espeak=False)
    text = "Fifteen chars." * 3
    chunks = await collect(tts.synthesize(text))
    audio = b"".join(chunks)

    assert len(chunks) > 1 and all(len(chunk) % 2 == 0 for chunk in chunks)
    assert len(audio) == round(len(text) / CHARS_PER_SECOND * tts.sample_rate) * 2
    assert 0 < peak(audio) < 32767 // 4  # audible, soft
    # starts and ends silent (a fade, no click)
    assert peak(audio[:20]) < 200 and peak(audio[-20:]) < 200


async def test_the_tone_stops_at_an_interrupt():
    tts = DemoTts(espeak=False)
    stream = tts.synthesize("A long answer that the caller will not let finish. " * 4)
    async with asyncio.timeout(5):
        await anext(stream)
    await tts.interrupt()
    assert await collect(stream, timeout=1) == []
    # and the next text is spoken in full
    assert len(b"".join(await collect(tts.synthesize("Next.")))) > 0


async def test_blank_text_is_silent():
    assert await collect(DemoTts(espeak=False).synthesize(" ")) == []


@needs_espeak
async def test_espeak_speaks_pcm_without_a_header():
    tts = DemoTts(espeak=True)
    await tts.start()
    short = b"".join(await collect(tts.synthesize("Hello.")))
    long = b"".join(await collect(tts.synthesize("Hello, this is a much longer sentence to say.")))
    await tts.close()

    assert tts.sample_rate == 22050
    assert not short.startswith(b"RIFF")
    assert len(short) % 2 == 0 and peak(short) > 1000  # speech, not silence
    assert len(long) > 2 * len(short)


@needs_espeak
async def test_espeak_reads_text_that_looks_like_an_option():
    tts = DemoTts(espeak=True)
    assert len(b"".join(await collect(tts.synthesize("--version")))) > 0


@needs_espeak
async def test_an_interrupt_kills_espeak():
    tts = DemoTts(espeak=True)
    stream = tts.synthesize("This is a long sentence that goes on and on for a good while. " * 10)
    async with asyncio.timeout(5):
        await anext(stream)
    process = tts._process
    await tts.interrupt()
    assert await collect(stream, timeout=2) == []
    assert process is not None and process.returncode is not None


@needs_espeak
async def test_a_failing_espeak_raises():
    tts = DemoTts(espeak=True)
    tts.espeak = shutil.which("false")  # exits 1 without a byte, as a broken install would
    with pytest.raises(TtsError, match=r"espeak-ng failed \(1\)"):
        await collect(tts.synthesize("Hello."))
