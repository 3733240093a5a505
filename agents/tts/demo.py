"""The offline demo voice, for the embedded run with no key and no network: real (robotic) speech
from espeak-ng when it is installed, else a soft tone as long as the text would take to say.

espeak-ng writes a streaming WAV (22050 Hz PCM16 mono for its own voices) to stdout as it goes, so
audio is yielded as it is produced, like a network provider's; barge-in kills the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import sys
from array import array
from collections.abc import AsyncGenerator, AsyncIterator

from agents.tts.base import Pcm16Stream, TtsError

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050
DEFAULT_VOICE = "en-us"
CHARS_PER_SECOND = 15.0  # about how fast people speak, for the tone's length
TONE_HZ = 220.0
TONE_LEVEL = 0.12  # of full scale: audible, not harsh
TONE_CHUNK = 0.1  # seconds of tone per yielded chunk
FADE = 0.02  # seconds of fade in and out, so the tone starts and stops without a click
READ_SIZE = 4096
TIMEOUT = 10.0  # espeak-ng silent this long: TtsError


class DemoTts:
    """See the module docstring. `espeak=None` uses espeak-ng when it is on PATH; False forces the
    tone (tests), True requires espeak-ng."""

    def __init__(self, *, voice: str = "", espeak: bool | None = None) -> None:
        self.voice = voice or DEFAULT_VOICE
        self.espeak = shutil.which(ESPEAK) if espeak is not False else None
        if espeak and not self.espeak:
            raise TtsError(f"{ESPEAK} is not installed")
        # espeak-ng's own voices speak at 22050 Hz; an mbrola voice at another rate is resampled
        # nowhere, so it is refused in `synthesize` rather than played at the wrong speed.
        self.sample_rate = ESPEAK_RATE
        self._process: asyncio.subprocess.Process | None = None
        self._generation = 0  # bumped by interrupt: a synthesis of an older one stops

    async def start(self) -> None:
        pass

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        generation = self._generation
        chunks = self._espeak(text) if self.espeak else self._tone(text)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if generation != self._generation:
                    return
                yield chunk

    async def interrupt(self) -> None:
        self._generation += 1
        self._kill()

    async def close(self) -> None:
        await self.interrupt()

    async def _espeak(self, text: str) -> AsyncGenerator[bytes]:
        generation = self._generation
        # Text on stdin, never argv: a sentence starting with "-" is not an option.
        process = await asyncio.create_subprocess_exec(
            self.espeak or ESPEAK,
            "--stdout",
            "--stdin",
            "-v",
            self.voice,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._process = process
        assert process.stdin and process.stdout and process.stderr
        try:
            process.stdin.write(text.encode())
            process.stdin.close()
            pcm = Pcm16Stream()
            while True:
                async with asyncio.timeout(TIMEOUT):
                    data = await process.stdout.read(READ_SIZE)
                if not data or generation != self._generation:
                    break
                chunk = pcm.feed(data)
                if pcm.wav_rate not in (None, self.sample_rate):
                    raise TtsError(f"{ESPEAK} voice {self.voice} speaks at {pcm.wav_rate} Hz")
                if chunk:
                    yield chunk
            if generation != self._generation:
                return  # killed by interrupt: not a failure
            async with asyncio.timeout(TIMEOUT):
                code = await process.wait()
                error = (await process.stderr.read()).decode(errors="replace").strip()
            if code or pcm.wav_rate is None:
                raise TtsError(f"{ESPEAK} failed ({code}): {error or 'no audio'}")
        except TimeoutError:
            raise TtsError(f"{ESPEAK} produced nothing for {TIMEOUT:g} s") from None
        finally:
            if self._process is process:
                self._kill()
                self._process = None
            with contextlib.suppress(Exception):  # reap it, so no zombie outlives the call
                async with asyncio.timeout(2):
                    await process.wait()

    async def _tone(self, text: str) -> AsyncGenerator[bytes]:
        rate = self.sample_rate
        total = max(1, round(len(text.strip()) / CHARS_PER_SECOND * rate))
        fade = min(round(FADE * rate), total // 2)
        step = round(TONE_CHUNK * rate)
        for start in range(0, total, step):
            samples = array("h")
            for n in range(start, min(start + step, total)):
                envelope = min(1.0, n / fade if fade else 1.0, (total - 1 - n) / fade if fade else 1.0)
                value = TONE_LEVEL * envelope * math.sin(2 * math.pi * TONE_HZ * n / rate)
                samples.append(round(value * 32767))
            if sys.byteorder == "big":
                samples.byteswap()  # PCM16 on the wire is little-endian
            yield samples.tobytes()
            await asyncio.sleep(0)  # let a barge-in in

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
