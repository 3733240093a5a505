"""CPU cost of Silero VAD for many calls: one ONNX run per call and window, or one per tick for all.

Workload. Each call has `--seconds` (60) of caller audio: the kept clips (calls/media/clips/) with
silence and low noise between them, each call starting at a different point of that loop. Audio is
fed as Twilio sends it, in 20 ms frames, all calls in step. "per call": each call's VoiceActivity
runs the model on every window it completes (batch 1). "batched": every 32 ms of audio (one tick)
one BatchedVad.flush() scores all windows queued by all calls, one run per window position
(a call's second queued window, when frames and ticks fall that way, takes a second run).

Both include the same windowing and decoding work; CPU time is the process's (user + sys) with
onnxruntime on one thread, so it is also the wall time of one core. "calls/core" is how many calls
one core could keep up with in real time: audio seconds processed per CPU second. The batched
"ms/tick" is how long one tick's runs take: how late the last call's probability comes.

Run: .venv/bin/python -m bench.vad_batch [--calls 1 50 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calls.media.audio import ulaw_to_pcm16
from calls.media.clips import NAMES, clip
from calls.media.vad import WINDOW_MS, BatchedVad, SileroModel, VoiceActivity

FRAME = 320  # bytes of PCM16 in Twilio's 20 ms frame
FRAME_MS = 20


def caller_audio(seconds: float) -> bytes:
    """A loop of speech, silence and faint noise at least twice `seconds` long, to cut calls from."""
    rng = np.random.default_rng(7)
    parts = []
    total = 0
    while total < 2 * seconds * 16000:
        for name in NAMES:
            gap = rng.normal(0, 40, int(8000 * rng.uniform(0.3, 1.5))).astype("<i2").tobytes()
            for part in (ulaw_to_pcm16(clip(name)), gap):
                parts.append(part)
                total += len(part)
    return b"".join(parts)


def calls_audio(count: int, seconds: float) -> list[bytes]:
    loop = caller_audio(seconds)
    size = int(seconds * 16000) // FRAME * FRAME
    step = (len(loop) - size) // max(count, 1) // 2 * 2
    return [loop[i * step : i * step + size] for i in range(count)]


def per_call(audio: list[bytes]) -> tuple[float, int]:
    vads = [VoiceActivity() for _ in audio]
    windows = 0
    start = time.process_time()
    for offset in range(0, len(audio[0]), FRAME):
        for vad, pcm in zip(vads, audio, strict=True):
            windows += len(vad.feed(pcm[offset : offset + FRAME]))
    return time.process_time() - start, windows


def batched(audio: list[bytes]) -> tuple[float, int, int, float]:
    vad = BatchedVad()
    streams = [vad.open() for _ in audio]
    windows = 0
    ticks = 0
    next_tick_ms = WINDOW_MS
    start = time.process_time()
    for index, offset in enumerate(range(0, len(audio[0]), FRAME)):
        for stream, pcm in zip(streams, audio, strict=True):
            stream.push(pcm[offset : offset + FRAME])
        if (index + 1) * FRAME_MS >= next_tick_ms:
            windows += sum(len(p) for p in vad.flush().values())
            ticks += 1
            next_tick_ms += WINDOW_MS
    windows += sum(len(p) for p in vad.flush().values())
    cpu = time.process_time() - start
    return cpu, windows, vad.runs, cpu / max(ticks, 1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    SileroModel.shared().session  # noqa: B018 - load the model before timing anything
    print(f"Silero VAD, 8 kHz, {args.seconds:g} s of audio per call, 20 ms frames, 32 ms ticks, one thread")
    print(
        f"{'calls':>6} {'windows':>8} | {'per-call CPU s':>14} {'us/window':>9} {'calls/core':>10} |"
        f" {'batched CPU s':>13} {'us/window':>9} {'calls/core':>10} {'runs':>6} {'ms/tick':>7} | {'speed-up':>8}"
    )
    for count in args.calls:
        audio = calls_audio(count, args.seconds)
        audio_s = count * len(audio[0]) / 16000
        cpu_1, windows_1 = per_call(audio)
        cpu_b, windows_b, runs, tick_ms = batched(audio)
        assert windows_1 == windows_b, (windows_1, windows_b)
        print(
            f"{count:>6} {windows_1:>8} | {cpu_1:>14.2f} {cpu_1 / windows_1 * 1e6:>9.1f} {audio_s / cpu_1:>10.0f} |"
            f" {cpu_b:>13.2f} {cpu_b / windows_b * 1e6:>9.1f} {audio_s / cpu_b:>10.0f} {runs:>6} {tick_ms:>7.2f} |"
            f" {cpu_1 / cpu_b:>7.2f}x"
        )


if __name__ == "__main__":
    main()
