"""The offline demo recogniser: no key, no network, no recognition.

It cannot tell what the caller said, so each turn's "transcript" says so plainly and reports how
long the caller spoke, which is still enough to exercise turn-taking end to end in the embedded run.
"""

from __future__ import annotations

from agents.stt.base import DEFAULT_COMMIT_TIMEOUT, SAMPLE_RATE, SttError

BYTES_PER_SECOND = SAMPLE_RATE * 2  # mono PCM16


def demo_transcript(audio_bytes: int) -> str:
    seconds = audio_bytes / BYTES_PER_SECOND
    return f"(demo transcription) I spoke for {seconds:.1f} seconds."


class DemoStt:
    sample_rate = SAMPLE_RATE

    def __init__(self) -> None:
        self._bytes = 0
        self._started = False
        self._closed = False

    async def start(self) -> None:
        self._started = True

    async def send_audio(self, pcm16_16k: bytes) -> None:
        self._check()
        self._bytes += len(pcm16_16k)

    async def commit(self, timeout: float = DEFAULT_COMMIT_TIMEOUT) -> str:
        self._check()
        audio, self._bytes = self._bytes, 0
        # No audio, no turn: the same empty text a real recogniser returns for silence.
        return demo_transcript(audio) if audio else ""

    async def clear(self) -> None:
        self._check()
        self._bytes = 0

    async def close(self) -> None:
        self._closed = True

    def _check(self) -> None:
        # Same contract as the real providers, so misuse shows up in the demo run too.
        if self._closed:
            raise SttError("demo-stt: closed")
        if not self._started:
            raise SttError("demo-stt: not started")
