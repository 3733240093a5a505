"""Phone audio conversions for Media Streams: G.711 mu-law, resampling, WAV headers, 20 ms frames.

Twilio sends and plays 8 kHz mono mu-law. Speech-to-text wants 16 kHz PCM16 and text-to-speech
usually produces 16/22.05/24 kHz PCM16 (sometimes behind a WAV header). The codec is the stdlib's
old `audioop` (kept alive for 3.13 by audioop-lts) and resampling is libsoxr: no hand-written DSP.
All PCM here is signed 16-bit little-endian mono, passed as bytes.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import audioop
import numpy as np
import soxr

PHONE_RATE = 8000
STT_RATE = 16000
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law: the size Twilio sends, and a good size to send back.

# audioop works in native byte order; every producer and consumer here is little-endian.
if sys.byteorder != "little":  # pragma: no cover - no big-endian deployment target
    raise ImportError("calls.media.audio assumes a little-endian host")


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 mu-law to PCM16 (two bytes out per byte in)."""
    return audioop.ulaw2lin(data, 2)


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Encode PCM16 to G.711 mu-law. `data` must hold whole samples (an even byte count)."""
    return audioop.lin2ulaw(data, 2)


def pcm16_to_float32(data: bytes) -> np.ndarray:
    """PCM16 bytes as float32 samples in [-1, 1), the input scale Silero VAD was trained on."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def frames(ulaw: bytes, size: int = FRAME_BYTES) -> Iterator[bytes]:
    """Split outbound mu-law into `size`-byte frames; the last one may be short.

    Twilio accepts any size, but small frames let a `clear` on barge-in drop most of a reply
    rather than a whole sentence already sent in one message.
    """
    if size <= 0:
        raise ValueError("frame size must be positive")
    for start in range(0, len(ulaw), size):
        yield ulaw[start : start + size]


class Resampler:
    """A streaming PCM16 resampler: feed chunks of any size, the filter state carries over.

    soxr's "MQ" quality is a deliberate choice: its delay is about 25 ms for 8 -> 16 kHz and 15 ms
    for 24 -> 8 kHz, against 66 ms and 21 ms for the default "HQ", and phone audio (300-3400 Hz)
    gains nothing from the steeper filter. Output lags input by that delay; `last=True` flushes it.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "MQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        # float32 inside, not soxr's int16 mode: that one dithers its output, so the same audio cut
        # into different chunks comes out +-1 apart. Rounding ourselves makes output depend on the
        # samples only, which keeps tests exact and replies reproducible.
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample one chunk of PCM16; `last=True` at the end of a stream returns the tail too."""
        if len(pcm) % 2:
            raise ValueError("PCM16 chunk has an odd number of bytes")
        if self._stream is None:
            return bytes(pcm)
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        out = self._stream.resample_chunk(samples, last=last)
        if last:
            self._stream.clear()  # ready for a new stream, as after reset()
        # The filter overshoots on full-scale input: clip before narrowing back to 16 bits.
        return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()

    def reset(self) -> None:
        """Forget buffered samples (and their not-yet-emitted output): a fresh stream follows."""
        if self._stream is not None:
            self._stream.clear()


class PhoneToStt:
    """Caller audio as Twilio sends it (8 kHz mu-law) to what speech-to-text wants (16 kHz PCM16)."""

    def __init__(self, out_rate: int = STT_RATE) -> None:
        self._resampler = Resampler(PHONE_RATE, out_rate)

    def process(self, ulaw: bytes, last: bool = False) -> bytes:
        return self._resampler.process(ulaw_to_pcm16(ulaw), last=last)

    def reset(self) -> None:
        self._resampler.reset()


class TtsToPhone:
    """Text-to-speech PCM16 at `source_rate` to 8 kHz mu-law for Twilio, one reply at a time.

    TTS providers stream bytes, not samples, so a chunk may end halfway through a sample: the odd
    byte is kept and joined to the next chunk. `reset()` on barge-in drops that byte and the
    resampler's buffered audio, so nothing of the interrupted reply leaks into the next one.
    """

    def __init__(self, source_rate: int) -> None:
        self.source_rate = source_rate
        self._resampler = Resampler(source_rate, PHONE_RATE)
        self._odd = b""

    def process(self, pcm: bytes) -> bytes:
        """Convert one chunk; returns the mu-law ready so far (may be empty while the filter fills)."""
        data = self._odd + pcm
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        return pcm16_to_ulaw(self._resampler.process(data[:whole]))

    def flush(self) -> bytes:
        """End of the reply: the resampler's tail, as mu-law. A lone odd byte is dropped."""
        self._odd = b""
        return pcm16_to_ulaw(self._resampler.process(b"", last=True))

    def reset(self) -> None:
        self._odd = b""
        self._resampler.reset()


@dataclass(frozen=True)
class WavFormat:
    sample_rate: int
    channels: int
    bits: int
    format_tag: int = 1  # 1 = integer PCM, 3 = float, 7 = mu-law, 0xFFFE = extensible.


_RIFF_HEADER = struct.Struct("<4sI4s")  # "RIFF", size, "WAVE"
_CHUNK_HEADER = struct.Struct("<4sI")  # id, size
_FMT = struct.Struct("<HHIIHH")  # format tag, channels, rate, byte rate, block align, bits
_STREAMING_SIZES = (0, 0xFFFFFFFF)  # written by encoders that do not know the length up front


def parse_wav_header(data: bytes) -> tuple[WavFormat | None, bytes]:
    """Split a WAV header off the first chunk of a TTS stream: `(format, pcm)`, or `(None, data)`.

    Walks the RIFF chunks (`fmt `, then any LIST/fact/... chunks) up to `data` and returns what
    follows its header. A data size of 0 or 0xFFFFFFFF (a streaming header) or one larger than the
    chunk means "the rest of the stream": everything after the header is returned. A chunk that
    starts a WAV header but ends before `data` raises ValueError: buffer more bytes and call again.
    """
    if len(data) < 4 or data[:4] != b"RIFF":
        return None, data
    if len(data) < _RIFF_HEADER.size:
        raise ValueError("incomplete WAV header")
    _, _, wave_id = _RIFF_HEADER.unpack_from(data)
    if wave_id != b"WAVE":
        raise ValueError("RIFF data is not WAVE")
    fmt: WavFormat | None = None
    offset = _RIFF_HEADER.size
    while offset + _CHUNK_HEADER.size <= len(data):
        chunk_id, size = _CHUNK_HEADER.unpack_from(data, offset)
        body = offset + _CHUNK_HEADER.size
        if chunk_id == b"data":
            if fmt is None:
                raise ValueError("WAV data chunk before its fmt chunk")
            end = len(data) if size in _STREAMING_SIZES else min(len(data), body + size)
            return fmt, data[body:end]
        if chunk_id == b"fmt ":
            if body + _FMT.size > len(data):
                break
            tag, channels, rate, _, _, bits = _FMT.unpack_from(data, body)
            fmt = WavFormat(sample_rate=rate, channels=channels, bits=bits, format_tag=tag)
        # RIFF chunks are word-aligned: an odd-sized chunk is followed by one pad byte.
        offset = body + size + (size & 1)
    raise ValueError("incomplete WAV header")
