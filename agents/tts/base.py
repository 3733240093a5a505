"""The contract between a call's media pipeline and a text-to-speech provider.

One TextToSpeech belongs to one call and keeps one connection open for it. The engine feeds it
sentence by sentence while the model is still generating, and plays what `synthesize` yields:
raw PCM16 mono at `sample_rate`, in whole samples, with no WAV header (providers strip it here, so
the caller never has to). On barge-in the engine calls `interrupt()`: the running `synthesize`
ends at once and no audio of the cancelled text ever comes out of a later `synthesize`.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# A WAV header with a few extra chunks (LIST, fact) stays well under this; more means garbage.
MAX_WAV_HEADER = 4096
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """What picks and configures a provider: plain values, so agents/tts needs no ORM or settings."""

    provider: str  # "together" | "cartesia" | "demo"
    model: str = ""  # "": the provider's default
    voice: str = ""  # "": the provider's default
    api_key: str = field(default="", repr=False)  # never in logs
    # The provider's websocket origin, e.g. "ws://127.0.0.1:8123" for a fake; "": the vendor's own.
    base_url: str = ""


class TtsError(Exception):
    """The provider could not produce (the rest of) a text's audio."""


class TextToSpeech(Protocol):
    """One call's speech synthesiser. Calls to `synthesize` are sequential; `interrupt` may come
    from another task while one runs."""

    sample_rate: int  # of the PCM16 mono audio `synthesize` yields

    async def start(self) -> None:
        """Open the connection ahead of the first sentence (its handshake is then off the
        critical path). Optional: `synthesize` connects when needed. Raises TtsError."""
        ...

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """The audio of `text`, yielded as it arrives; ends when that text's audio is complete,
        or promptly after `interrupt()`. Raises TtsError on failure; never waits unboundedly."""
        ...

    async def interrupt(self) -> None:
        """Barge-in: cancel the text being synthesised and discard any late audio of it. Never
        raises: a connection that cannot be told is dropped and reopened instead."""
        ...

    async def close(self) -> None:
        """End of the call: close the connection. Idempotent."""
        ...


class Pcm16Stream:
    """One text's audio bytes as whole PCM16 samples: strips a WAV header if the audio starts
    with one (some servers send a streaming WAV whose sizes are placeholders), and carries an odd
    trailing byte over to the next chunk, since providers cut chunks anywhere."""

    def __init__(self) -> None:
        self._head = b""  # held until we know whether the audio starts with a WAV header
        self._checked = False
        self._odd = b""
        self.wav_rate: int | None = None  # the header's sample rate, when there was one

    def feed(self, data: bytes) -> bytes:
        if not self._checked:
            data = self._head + data
            if len(data) < 4:
                self._head = data
                return b""
            if data.startswith(b"RIFF"):
                found = wav_data_offset(data)
                if found is None:
                    if len(data) > MAX_WAV_HEADER:
                        raise TtsError("audio starts with a WAV header that never reaches its data")
                    self._head = data
                    return b""
                offset, self.wav_rate = found
                data = data[offset:]
            self._head = b""
            self._checked = True
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        return data[:whole]


def wav_data_offset(buf: bytes) -> tuple[int, int] | None:
    """(offset of the sample data, sample rate) of the WAV header at the start of `buf`, or None
    when `buf` does not reach the data yet. The data chunk's size is ignored: streamed WAVs do not
    know it. Raises TtsError for anything but PCM16 mono."""
    if len(buf) < 12:
        return None
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        raise TtsError("audio starts with RIFF but is not a WAV")
    offset, rate = 12, None
    while offset + 8 <= len(buf):
        chunk_id = buf[offset : offset + 4]
        size = int.from_bytes(buf[offset + 4 : offset + 8], "little")
        if chunk_id == b"fmt ":
            if offset + 8 + 16 > len(buf):
                return None
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", buf, offset + 8)
            if fmt not in (WAVE_FORMAT_PCM, WAVE_FORMAT_EXTENSIBLE) or channels != 1 or bits != 16:
                raise TtsError(f"unsupported WAV audio: format {fmt}, {channels} channels, {bits} bits")
        elif chunk_id == b"data":
            if rate is None:
                raise TtsError("WAV data comes before its format")
            return offset + 8, rate
        offset += 8 + size + (size & 1)
    return None
