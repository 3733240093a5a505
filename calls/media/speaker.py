"""The agent's voice on a Media Streams call: reply text in, phone audio and marks out.

Text arrives token by token while the model is still writing. It is cut into phrases (the engine's
PhraseChunker: a short first one, then clauses and sentences), and each phrase is synthesised
as soon as it is complete, so the caller hears the first words while the rest is generated.
Each phrase's audio goes to Twilio as 20 ms media events followed by a uniquely named mark; the
PlaybackLedger turns the echoes into what the caller heard. Audio is sent as fast as it comes:
Twilio buffers it, and `clear` empties that buffer on barge-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from agents.tts.base import TextToSpeech, TtsError
from calls.engine.speech import PhraseChunker
from calls.media.audio import TtsToPhone, frames
from calls.media.playback import PlaybackLedger
from calls.media.wire import clear_event, mark_event, media_event

logger = logging.getLogger(__name__)

FRAME_MS = 20
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
SILENCE = b"\xff"  # mu-law zero
MAX_EVENT_BYTES = 8000  # one second: Twilio's own sample sends that much in one event
SYNTHESIS_TIMEOUT = 15.0  # seconds for one phrase's audio: a stalled provider is a failure


def _chunker() -> PhraseChunker:
    return PhraseChunker("phrase", first_words=5, clause_words=8, max_words=40)


class Speaker:
    def __init__(
        self,
        tts: TextToSpeech,
        send: Callable[[str], Awaitable[None]],
        stream_sid: str,
        *,
        on_error: Callable[[Exception], Awaitable[TextToSpeech | None]],
        ledger: PlaybackLedger | None = None,
    ) -> None:
        self.tts = tts
        self._send = send
        self._stream_sid = stream_sid
        self._on_error = on_error  # returns another provider to carry on with, or None
        self.ledger = ledger or PlaybackLedger()
        self._chunker = _chunker()
        self._open = False  # an utterance has begun and its `finish` has not come yet
        self._muted = False  # between a barge-in and the engine's abort: late tokens are dropped
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._converter = TtsToPhone(tts.sample_rate)
        self._synthesising = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._interrupting = asyncio.Lock()
        self._worker = self._start_worker()

    # --- what the engine says ------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self._muted:
            return
        if not self._open:
            # A new reply: its own phrases (a short first one again) and its own heard text.
            self._open = True
            self._chunker = _chunker()
            self.ledger.new_utterance()
        self._enqueue(self._chunker.feed(text))

    def finish(self) -> None:
        """The reply is complete: speak what the chunker still holds."""
        if self._muted or not self._open:
            return
        self._open = False
        self._enqueue(self._chunker.flush())

    def _enqueue(self, phrase: str) -> None:
        if phrase.strip():
            self._idle.clear()
            self._queue.put_nowait(phrase)

    # --- state -----------------------------------------------------------------------------------
    @property
    def speaking(self) -> bool:
        """The agent is talking: a reply under way (text held for its next phrase, phrases queued
        or being synthesised), or audio sent and not yet played."""
        return self._open or self._synthesising or not self._queue.empty() or self.ledger.playing

    async def wait_played(self, timeout: float) -> bool:
        """Until everything said so far has been synthesised and played (mark echoes), bounded."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                await self.ledger.quiet.wait()
        except TimeoutError:
            return False
        return True

    # --- barge-in --------------------------------------------------------------------------------
    async def interrupt(self) -> None:
        """Stop talking at once. Before anything is awaited, the synthesis in progress is cancelled
        and the speaker muted, so no audio of this reply can follow the `clear`; then `clear` (Twilio
        drops what it has buffered), then the provider is told. `unmute()` once the engine has
        aborted the reply: its tokens in flight until then are dropped."""
        async with self._interrupting:
            self._muted, self._open = True, False
            self.ledger.clear()
            while not self._queue.empty():
                self._queue.get_nowait()
            worker = self._worker
            worker.cancel()
            try:
                await self._send(clear_event(self._stream_sid))
            except Exception as exc:  # a socket closing under us: stop the rest all the same
                logger.info("stream %s: clear not sent: %r", self._stream_sid, exc)
            # Waits without taking on the worker's own error, and without swallowing a cancel of
            # this task (a hang-up during a barge-in must still end the call's listener).
            try:
                await worker
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this task is cancelled too (the call is closing), not just the worker
            except Exception:
                pass  # the worker's own failure was logged where it happened
            self._synthesising = False
            self._worker = self._start_worker()
            await self.tts.interrupt()
            self._converter.reset()  # no tail of the old reply leaks into the next
            self._idle.set()

    def unmute(self) -> None:
        self._muted = False

    async def close(self) -> None:
        self._worker.cancel()
        # The worker may already have died on a send to a socket the caller closed.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._worker
        await self.tts.close()

    # --- synthesis -------------------------------------------------------------------------------
    def _start_worker(self) -> asyncio.Task:
        return asyncio.create_task(self._work(), name=f"speaker:{self._stream_sid}")

    async def _work(self) -> None:
        while True:
            phrase = await self._queue.get()
            self._synthesising = True
            try:
                await self._speak(phrase)
            except Exception:  # one phrase failing must not leave the agent mute for the call
                logger.exception("stream %s: phrase not spoken: %r", self._stream_sid, phrase[:60])
            finally:
                self._synthesising = False
                if self._queue.empty():
                    self._idle.set()

    async def _speak(self, phrase: str) -> None:
        sent = 0
        try:
            sent = await self._synthesise(phrase)
        except (TtsError, TimeoutError) as exc:
            replacement = await self._on_error(exc)
            if replacement is None:
                return
            failed, self.tts = self.tts, replacement
            with contextlib.suppress(Exception):
                await failed.close()  # its socket and reader go with it
            self._converter = TtsToPhone(replacement.sample_rate)
            try:
                sent = await self._synthesise(phrase)
            except (TtsError, TimeoutError) as again:
                logger.error("stream %s: the fallback voice failed too: %s", self._stream_sid, again)
                return
        # Marked even when no audio went out (both voices failed): the heard text must stay a
        # prefix of what was said, so a silent phrase is credited rather than skipped.
        name = self.ledger.next_name()
        await self._send(mark_event(self._stream_sid, name))
        self.ledger.sent(name, phrase, sent * FRAME_MS)

    async def _synthesise(self, phrase: str) -> int:
        """Send `phrase`'s audio as it arrives, each provider chunk as one `media` event of whole
        20 ms frames (fifty events a second per call cost the event loop more than the audio
        itself; Twilio plays any size); returns how many 20 ms frames went out."""
        count = 0
        leftover = b""
        async with asyncio.timeout(SYNTHESIS_TIMEOUT):
            async for pcm in self.tts.synthesize(phrase):
                audio = leftover + self._converter.process(pcm)
                whole = len(audio) - len(audio) % FRAME_BYTES
                leftover = audio[whole:]
                for chunk in frames(audio[:whole], MAX_EVENT_BYTES):
                    await self._send(media_event(self._stream_sid, chunk))
                count += whole // FRAME_BYTES
        tail = leftover + self._converter.flush()
        self._converter.reset()
        if tail:
            tail += SILENCE * (-len(tail) % FRAME_BYTES)  # whole frames: the phrase ends in a few ms of quiet
            for chunk in frames(tail, MAX_EVENT_BYTES):
                await self._send(media_event(self._stream_sid, chunk))
            count += len(tail) // FRAME_BYTES
        return count
