"""One Media Streams call, transport-side: caller audio to turns, the engine's text to audio.

Knows nothing of websockets: the consumer hands it parsed events and a `send` for outbound
frames. It decides where a caller turn comes from (Silero VAD's end of turn, then the
speech-to-text transcript) and where reply text goes (phrases to text-to-speech, audio and marks
to Twilio). History, truncation, tools, timers, recording and summaries are the engine's
(calls/engine/conversation.py), exactly as for ConversationRelay.

States, as the reference names them: listening (nobody talks), processing (a caller turn was
sent to the model, nothing spoken yet), speaking (the agent's audio is queued or playing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from agents.stt import SpeechToText, SttError
from agents.tts import TextToSpeech
from calls.engine.conversation import Conversation
from calls.engine.heard import Heard
from calls.media import providers
from calls.media.audio import PhoneToStt, ulaw_to_pcm16
from calls.media.speaker import Speaker
from calls.media.vad import BatchedVad, TurnDetector, TurnEvent, VadStream
from calls.media.wire import Start
from calls.metadata import Handoff
from calls.models import Call
from calls.store.db import DATABASE_DOWN, in_db_thread
from calls.store.offline import answered_offline

logger = logging.getLogger(__name__)

MAX_BACKLOG_FRAMES = 250  # 5 s of caller audio waiting for the VAD: the server is far behind
PREROLL_FRAMES = 15  # 300 ms of audio before speech was detected, so its first sound is transcribed
END_PLAYBACK_TIMEOUT = 15.0  # seconds to let a goodbye finish playing before the socket closes


class MediaCall:
    """The transport side of one stream; its `conversation` is the engine every transport shares."""

    chunks_phrases = True  # the speaker cuts phrases for the voice (calls/media/speaker.py)

    def __init__(
        self, send: Callable[[str], Awaitable[None]], hang_up: Callable[[], Awaitable[None]]
    ) -> None:
        self._send = send
        self._hang_up = hang_up
        self.conversation = Conversation(self)
        self.stream_sid = ""
        # Set by `start`; what runs before it (a hang-up) finds them unset.
        self._speaker: Speaker | None = None
        self._stt: SpeechToText | None = None
        self._vad: BatchedVad | None = None
        self._vad_stream: VadStream | None = None
        self._detector: TurnDetector | None = None
        self._inbound: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._listener: asyncio.Task | None = None
        self.frames_dropped = 0
        self.to_stt = PhoneToStt()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._turn_tasks: set[asyncio.Task] = set()
        self._stt_down = False
        self._turn_lock = asyncio.Lock()
        self._cut_at: Heard | None = None  # a barge-in's heard text, until the engine has it
        self._speaking_for: object = None  # the engine's generation the speaker's words belong to
        # Turns whose commit has not returned yet, and the speech that followed each of them,
        # held back until it has (one list per pending commit, oldest first).
        self._commits_pending = 0
        self._held: list[list[bytes]] = []
        self._ending: asyncio.Task | None = None
        self.closed = False
        # When the frames that mattered arrived, for the latency lines in the log (bench/media_load.py).
        self._quiet = True
        self.speech_onset_at: float | None = None
        self.last_speech_frame_at: float | None = None

    # What `start` sets up, for what runs after it: caller audio (its listener starts there), turns
    # and the engine's output. Used before it, they raise.
    @property
    def speaker(self) -> Speaker:
        return _started(self._speaker, "speaker")

    @property
    def stt(self) -> SpeechToText:
        return _started(self._stt, "speech-to-text")

    @property
    def vad(self) -> BatchedVad:
        return _started(self._vad, "VAD")

    @property
    def detector(self) -> TurnDetector:
        return _started(self._detector, "turn detector")

    # --- the call's start ------------------------------------------------------------------------
    async def start(self, start: Start) -> bool:
        """Bind to the call and greet the caller; False when the stream names no call of ours."""
        if self.stream_sid or self.closed:
            logger.warning("stream %s: start ignored (a second one, or after stop)", start.stream_sid)
            return True
        if not await _call_is_ours(start):
            return False
        self.stream_sid = start.stream_sid
        await self.conversation.setup(start.call)
        persona = self.conversation.persona
        self._detector = TurnDetector(providers.vad_settings(persona))
        self._vad = BatchedVad.for_this_loop()
        self._vad_stream = self._vad.open()
        self._stt = providers.speech_to_text(persona)
        tts = providers.text_to_speech(persona)
        self._speaker = Speaker(tts, self._send, self.stream_sid, on_error=self._voice_failed)
        await asyncio.gather(self._start_stt(), self._start_tts(tts))
        turns = self.conversation.turns
        if len(turns) == 1 and turns[0].role == "assistant" and turns[0].text:
            # The webhook stored the greeting as turn 0; it is spoken here, where the caller can
            # talk over it like any reply (the ledger then truncates turn 0).
            self.speaker.say(turns[0].text)
            self.speaker.finish()
        self._listener = asyncio.create_task(self._listen(), name=f"listen:{self.stream_sid}")
        return True

    async def _start_stt(self) -> None:
        try:
            await self.stt.start()
        except SttError as exc:
            self._stt_down = True
            self._stt_failed(exc)

    async def _start_tts(self, tts: TextToSpeech) -> None:
        try:
            await tts.start()
        except Exception as exc:  # the first phrase retries, then falls back to the offline voice
            logger.warning("stream %s: text-to-speech did not start: %s", self.stream_sid, exc)

    # --- caller audio ----------------------------------------------------------------------------
    async def audio(self, ulaw: bytes) -> None:
        """One inbound media event, only queued here: Twilio drops audio from a socket that reads
        too slowly, so the socket's receive path never waits for the VAD or a provider."""
        if self._listener is None or self.closed:
            return  # media before `start`: nothing to attach it to
        if self._inbound.qsize() >= MAX_BACKLOG_FRAMES:
            self.frames_dropped += 1
            if self.frames_dropped == 1:
                logger.warning(
                    "stream %s: caller audio %s frames behind; dropping", self.stream_sid, MAX_BACKLOG_FRAMES
                )
            return
        self._inbound.put_nowait((ulaw, time.monotonic()))

    async def _listen(self) -> None:
        """Score the caller's frames in order, each batch of them with every other call's windows
        (BatchedVad), and act on the turn events. A backlog is pushed whole, so it is scored in one
        tick and the call catches up rather than staying a window behind."""
        inbound = self._inbound
        while True:
            frames = [await inbound.get()]
            while not inbound.empty():
                frames.append(inbound.get_nowait())
            try:
                vad, stream = self.vad, _started(self._vad_stream, "VAD stream")
                scored = [(ulaw, at, vad.submit(stream, ulaw_to_pcm16(ulaw))) for ulaw, at in frames]
            except Exception:
                logger.exception("stream %s: caller audio not scored", self.stream_sid)
                continue
            for ulaw, at, futures in scored:
                try:
                    # Every window is answered, with its error if a run fails (BatchedVad._tick).
                    probabilities = [await future for future in futures]
                    await self._heard_frame(ulaw, at, probabilities)
                except Exception:  # one bad frame or failed step must not deafen the call
                    logger.exception("stream %s: caller audio failed", self.stream_sid)

    async def _heard_frame(self, ulaw: bytes, arrived_at: float, probabilities: list[float]) -> None:
        """One frame (received at `arrived_at`) and the speech probability of each VAD window it
        completed: speech-to-text while the caller is in a turn, and the turn events."""
        # Kept as it came: only audio that goes to speech-to-text is resampled (most frames do not).
        self._preroll.append(ulaw)
        detector = self.detector
        was_in_speech = detector.in_speech
        speech_starts = detector.settings.start_threshold
        speech_ends = detector.settings.end_threshold
        for probability in probabilities:
            # For the latency lines: speech begins above the start threshold after a quiet
            # stretch, and its last frame is the last one not yet below the end threshold (the
            # end-of-turn silence counts from the next window).
            if probability > speech_starts and self._quiet:
                self.speech_onset_at, self._quiet = arrived_at, False
            if probability >= speech_ends:
                self.last_speech_frame_at = arrived_at
            else:
                self._quiet = True
            event = detector.observe(probability, agent_speaking=self.speaker.speaking)
            if event is TurnEvent.BARGE_IN:
                await self.barge_in()
            elif event is TurnEvent.END_OF_TURN:
                await self._transcribe(was_in_speech)
                self._commits_pending += 1  # the next speech waits until this turn's text is in
                self._held.append([])
                self._spawn(self._end_of_turn())
                return
            elif event is TurnEvent.SPEECH_DISCARDED:
                if self._commits_pending:
                    self._held[-1].clear()  # only the discarded stretch
                else:
                    await self._stt_call(self.stt.clear())
                return
        if detector.in_speech:
            await self._transcribe(was_in_speech)

    async def _transcribe(self, continuing: bool) -> None:
        """Send this frame to speech-to-text, or at the start of speech the pre-roll ending with it."""
        if continuing:
            audio = self._preroll[-1]
        else:
            self.to_stt.reset()  # a new stretch of speech: no tail of the previous one
            audio = b"".join(self._preroll)
        pcm = self.to_stt.process(audio)
        if self._commits_pending:
            self._held[-1].append(pcm)  # sent once the turns before it have their text
        else:
            await self._stt_call(self.stt.send_audio(pcm))

    async def _stt_call(self, work: Awaitable[None]) -> None:
        try:
            await work
        except SttError as exc:
            if not self._stt_down:  # logged and stored once; each turn then gets the apology
                self._stt_down = True
                self._stt_failed(exc)

    async def _end_of_turn(self) -> None:
        """Commit the turn's audio, then answer it. One at a time, in order: speech that follows
        is held back meanwhile, or its words would land in this turn or be wiped with it."""
        async with self._turn_lock:
            try:
                text = await self._commit()
            finally:
                self._commits_pending -= 1
                for pcm in self._held.pop(0):
                    await self._stt_call(self.stt.send_audio(pcm))
            if text is None:
                await self.conversation.speak(self.conversation.persona.fallback_line)
            elif not text.strip():
                logger.info("stream %s: end of turn with no words transcribed", self.stream_sid)
            else:
                if self.speaker.speaking or self.conversation.generation is not None:
                    # A turn that ends while the agent is processing or talking: the new words win,
                    # and the old reply is cut where the caller was.
                    await self._stop_speaking()
                await self.conversation.prompt(text)

    async def _commit(self) -> str | None:
        """The turn's transcript; None when speech-to-text failed."""
        if self.last_speech_frame_at is not None:
            logger.info(
                "stream %s: end of turn committed %.0f ms after the last speech frame",
                self.stream_sid,
                (time.monotonic() - self.last_speech_frame_at) * 1000,
            )
        try:
            return await self.stt.commit()
        except SttError as exc:
            if not self._stt_down:
                self._stt_down = True
                self._stt_failed(exc)
            return None

    # --- barge-in --------------------------------------------------------------------------------
    async def barge_in(self) -> None:
        """The caller talks over the agent: `clear` Twilio's buffer at once, stop synthesis and the
        model, and keep in the transcript only the audio that was played."""
        began, now = self.speech_onset_at, time.monotonic()
        await self._stop_speaking()
        if began is not None:
            logger.info(
                "stream %s: barge-in cleared %.0f ms after the caller's speech began",
                self.stream_sid,
                (now - began) * 1000,
            )

    async def _stop_speaking(self) -> None:
        heard = self._cut_at = self.speaker.ledger.heard()
        try:
            await self.speaker.interrupt()
            await self.conversation.interrupt(heard=heard)
        finally:
            self.speaker.unmute()
        self._cut_at = None
        logger.info("stream %s: agent stopped; the caller heard %r", self.stream_sid, heard.text[-60:])

    def mark(self, name: str) -> None:
        if self._speaker is not None:
            self._speaker.ledger.echoed(name)

    async def dtmf(self, digit: str) -> None:
        await self.conversation.dtmf(digit)

    # --- the engine's output (ConversationOutput) ------------------------------------------------
    async def send_token(self, token: str, last: bool) -> None:
        generation = self.conversation.generation
        if generation is not self._speaking_for:
            # A new reply while the last one never finished (the engine cut it for the time limit
            # or a keypad entry): close that one, so this one starts its own phrases and heard text.
            self._speaking_for = generation
            self.speaker.finish()
        if token:
            self.speaker.say(token)
        if last:
            self.speaker.finish()

    async def send_language(self, code: str) -> None:
        # The persona's speech providers are set per call; a language switch keeps them.
        logger.info("stream %s: language switch to %s kept the persona's voice", self.stream_sid, code)

    async def hang_up(self) -> None:
        """Close the stream (another socket took the call over); closing it closes this call."""
        await self._hang_up()

    async def send_end(self, handoff_data: str) -> None:
        """The agent ends the call: once the goodbye has played, store the handoff, close the
        stream, and `<Connect action>` carries on from the stored handoff
        (calls/webhooks/stream_actions.py). Runs as its own task: the engine calls this holding
        its lock, which closing the conversation takes too."""
        handoff: Handoff = json.loads(handoff_data)
        self.conversation.recorder.set_metadata("handoff", handoff)
        self._ending = asyncio.create_task(self._end_after_goodbye(), name=f"end:{self.stream_sid}")
        self._ending.add_done_callback(_log_failure)

    async def _end_after_goodbye(self) -> None:
        await self.speaker.wait_played(END_PLAYBACK_TIMEOUT)
        await self.close()  # every write applied, the handoff included, before Twilio asks
        await self._hang_up()

    # --- failures ----------------------------------------------------------------------------------
    def _stt_failed(self, exc: Exception) -> None:
        logger.warning("stream %s: speech-to-text failed: %s", self.stream_sid, exc)
        self.conversation.note_error("stt", str(exc))

    async def _voice_failed(self, exc: Exception) -> TextToSpeech | None:
        logger.warning(
            "stream %s: text-to-speech failed: %s; the offline voice carries on", self.stream_sid, exc
        )
        self.conversation.note_error("tts", str(exc) or type(exc).__name__)
        voice = providers.fallback_voice()
        try:
            await voice.start()
        except Exception:
            logger.exception("stream %s: the offline voice did not start", self.stream_sid)
            return None
        return voice

    # --- the end -----------------------------------------------------------------------------------
    def _spawn(self, work: Awaitable[object]) -> None:
        task = asyncio.ensure_future(work)
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)
        task.add_done_callback(_log_failure)

    async def close(self) -> None:
        """The stream stopped or the socket closed: no task of this call outlives it."""
        if self.closed:
            return
        self.closed = True
        tasks = [self._listener, *self._turn_tasks]
        if self._ending is not None and self._ending is not asyncio.current_task():
            tasks.append(self._ending)
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._vad is not None and self._vad_stream is not None:
            self._vad.close(self._vad_stream)
        try:
            cut = self._cut_at  # a barge-in the hang-up cut short: its cut still holds
            speaker = self._speaker
            if cut is None and speaker is not None and speaker.speaking and self._ending is None:
                # Hung up while the agent talked: the turn keeps what was played, as at a barge-in.
                cut = speaker.ledger.heard()
            if cut is not None:
                await self.conversation.interrupt(heard=cut)
        finally:
            try:
                await self.conversation.close()
            finally:
                if self._speaker is not None:
                    await self._speaker.close()
                if self._stt is not None:
                    with contextlib.suppress(Exception):
                        await self._stt.close()


async def _call_is_ours(start: Start) -> bool:
    """A stream belongs to a call our voice webhook answered (its `call_id` parameter names it)
    that has not ended: the handshake's signature is the same for every call, so a replayed
    socket must not create calls or reopen old ones."""
    call_id = start.call.custom_parameters.get("call_id", "")
    if not call_id and answered_offline(start.call.call_sid):
        return True  # answered while the database was away: it has no id yet
    try:
        exists = (
            call_id.isdigit()
            # Through in_db_thread: a connection a database restart dropped is replaced, not taken
            # for an outage that would skip this check.
            and await in_db_thread(
                Call.objects.filter(
                    pk=int(call_id), call_sid=start.call.call_sid, ended_at__isnull=True
                ).exists
            )
        )
    except DATABASE_DOWN:
        # Nothing to check against: a signed stream naming a call id goes on rather than failing
        # a live caller; the call's writes wait for the database.
        logger.warning(
            "stream %s: call %s not checked, the database is unreachable", start.stream_sid, call_id
        )
        return call_id.isdigit()
    if not exists:
        logger.warning(
            "stream %s refused: no live call %s with id %r", start.stream_sid, start.call.call_sid, call_id
        )
    return exists


def _started[T](value: T | None, what: str) -> T:
    if value is None:
        raise RuntimeError(f"media call: {what} used before the stream started")
    return value


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("media call task failed", exc_info=exc)
