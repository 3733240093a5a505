"""G.711, resampling, WAV headers and framing on real and synthetic audio."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from calls.media.audio import (
    PhoneToStt,
    Resampler,
    TtsToPhone,
    WavFormat,
    frames,
    parse_wav_header,
    pcm16_to_float32,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from calls.media.clips import NAMES, clip


def tone(rate: int, seconds: float, hz: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * amplitude).astype("<i2")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_clips_are_raw_mulaw_of_a_few_seconds():
    for name in NAMES:
        data = clip(name)
        assert 2 * 8000 < len(data) < 4 * 8000, name
        assert not data.startswith(b"RIFF")
    with pytest.raises(KeyError):
        clip("../clips/__init__")


def test_mulaw_round_trip_is_close():
    pcm = tone(8000, 0.5).tobytes()
    ulaw = pcm16_to_ulaw(pcm)
    assert len(ulaw) == len(pcm) // 2
    back = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.int32)
    orig = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    # mu-law keeps about 3% relative error at this level (8 bits, logarithmic).
    assert np.max(np.abs(back - orig)) <= 0.04 * 8000
    assert rms(back - orig) < 0.02 * rms(orig)


def test_mulaw_decode_of_a_clip_is_speech_level_audio():
    pcm = np.frombuffer(ulaw_to_pcm16(clip("hello")), dtype="<i2")
    assert len(pcm) == len(clip("hello"))
    assert 500 < rms(pcm) < 20000
    # Re-encoding decoded mu-law gives the same bytes (each code decodes to its own level).
    assert pcm16_to_ulaw(pcm.tobytes()) == clip("hello")


def test_pcm16_to_float32_scale():
    x = pcm16_to_float32(np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes())
    assert x.dtype == np.float32
    assert x.tolist() == pytest.approx([0.0, 0.5, -1.0, 32767 / 32768])


def test_resample_8k_16k_8k_keeps_length_and_signal():
    source = tone(8000, 1.0, hz=440)
    up, down = Resampler(8000, 16000), Resampler(16000, 8000)
    chunks = [source[i : i + 160].tobytes() for i in range(0, len(source), 160)]  # 20 ms frames
    wide = b"".join(up.process(c) for c in chunks) + up.process(b"", last=True)
    assert len(wide) == 2 * len(source.tobytes())
    back = np.frombuffer(down.process(wide, last=True), dtype="<i2")
    assert len(back) == len(source)
    # Same tone, same level, same phase (the streams are aligned once flushed): compare the middle.
    middle = slice(400, -400)
    assert rms(back[middle]) == pytest.approx(rms(source[middle]), rel=0.02)
    assert rms(back[middle].astype(np.int32) - source[middle]) < 0.05 * rms(source[middle])


def test_resampler_same_rate_passes_through_and_rejects_half_samples():
    r = Resampler(8000, 8000)
    assert r.process(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
    with pytest.raises(ValueError):
        Resampler(8000, 16000).process(b"\x01\x02\x03")


def test_phone_to_stt_doubles_the_sample_count():
    stt = PhoneToStt()
    data = clip("hello")
    out = b"".join(stt.process(f) for f in frames(data)) + stt.process(b"", last=True)
    assert len(out) == 4 * len(data)  # 2x samples, 2 bytes each


def test_tts_to_phone_odd_chunk_split_gives_the_same_audio():
    pcm = tone(24000, 0.3, hz=300).tobytes()
    whole = TtsToPhone(24000)
    expected = whole.process(pcm) + whole.flush()
    assert len(expected) == len(pcm) // 2 // 3  # 24 kHz PCM16 -> 8 kHz mu-law

    split = TtsToPhone(24000)
    out = b""
    for start in range(0, len(pcm), 1001):  # odd sizes: most chunks end halfway through a sample
        out += split.process(pcm[start : start + 1001])
    out += split.flush()
    assert out == expected


def test_tts_to_phone_reset_leaks_nothing_into_the_next_reply():
    loud = tone(24000, 0.2, hz=300, amplitude=20000).tobytes()
    silence = bytes(24000 // 5 * 2)
    conv = TtsToPhone(24000)
    conv.process(loud + b"\x7f")  # an interrupted reply, ending on half a sample
    conv.reset()
    after = conv.process(silence) + conv.flush()
    assert len(after) == len(silence) // 6
    assert np.max(np.abs(np.frombuffer(ulaw_to_pcm16(after), dtype="<i2"))) < 10

    fresh = TtsToPhone(24000)
    assert after == fresh.process(silence) + fresh.flush()


def wav_bytes(pcm: bytes, rate: int = 24000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def test_parse_wav_header_without_header_returns_the_data():
    data = tone(8000, 0.01).tobytes()
    assert parse_wav_header(data) == (None, data)
    assert parse_wav_header(b"") == (None, b"")


def test_parse_wav_header_plain():
    pcm = tone(24000, 0.05).tobytes()
    fmt, rest = parse_wav_header(wav_bytes(pcm))
    assert fmt == WavFormat(sample_rate=24000, channels=1, bits=16, format_tag=1)
    assert rest == pcm


def test_parse_wav_header_skips_a_list_chunk_with_padding():
    pcm = tone(16000, 0.05).tobytes()
    plain = wav_bytes(pcm, rate=16000)
    fmt_end = 12 + 8 + 16  # RIFF header, fmt chunk header, 16-byte PCM fmt
    info = b"INFOISFT" + struct.pack("<I", 5) + b"Lavf\x00"
    list_chunk = b"LIST" + struct.pack("<I", len(info)) + info + b"\x00"  # odd size: pad byte
    data = plain[:fmt_end] + list_chunk + plain[fmt_end:]
    fmt, rest = parse_wav_header(data)
    assert fmt == WavFormat(16000, 1, 16)
    assert rest == pcm


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_parse_wav_header_streaming_sizes_mean_the_rest(size):
    pcm = tone(24000, 0.02).tobytes()
    header = bytearray(wav_bytes(b""))
    struct.pack_into("<I", header, 4, 0xFFFFFFFF)  # RIFF size unknown too
    struct.pack_into("<I", header, 40, size)
    fmt, rest = parse_wav_header(bytes(header) + pcm)
    assert fmt is not None and fmt.sample_rate == 24000
    assert rest == pcm


def test_parse_wav_header_trims_to_the_data_size_and_rejects_truncation():
    pcm = tone(8000, 0.01).tobytes()
    full = wav_bytes(pcm, rate=8000)
    _, rest = parse_wav_header(full + b"LIST\x04\x00\x00\x00abcd")  # trailing chunk after data
    assert rest == pcm
    with pytest.raises(ValueError):
        parse_wav_header(full[:30])  # inside the fmt chunk


def test_frames_are_20_ms():
    data = clip("thanks")
    parts = list(frames(data))
    assert all(len(p) == 160 for p in parts[:-1])
    assert 0 < len(parts[-1]) <= 160
    assert b"".join(parts) == data
    assert list(frames(b"")) == []
