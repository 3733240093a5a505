"""The contract between a call's audio transport and a streaming speech-to-text provider, and the
websocket plumbing the hosted providers share.

One provider instance serves one call over one long-lived connection. The transport streams the
caller's audio in as it arrives (`send_audio`), decides itself when the caller's turn ends (its own
VAD), and then asks for that turn's text (`commit`). Every await is bounded: a provider that stalls
or drops raises SttError instead of hanging the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz, mono signed 16-bit little-endian: what every provider here is sent
DEFAULT_COMMIT_TIMEOUT = 0.6  # seconds a commit waits for the provider's last word


@dataclass(frozen=True)
class SttConfig:
    """Plain settings for one call's recogniser; the caller resolves the key from its variable."""

    provider: str  # "together" | "deepgram" | "demo"
    model: str = ""  # "": the provider's default
    language: str = "en"
    api_key: str = ""
    base_url: str = ""  # "": the provider's public endpoint (tests point it at a fake)


class SttError(Exception):
    """The recogniser is unusable for the rest of the call (connection refused, dropped or stalled)."""


class SpeechToText(Protocol):
    sample_rate: int

    async def start(self) -> None:
        """Connect and configure the session; raises SttError when that fails."""
        ...

    async def send_audio(self, pcm16_16k: bytes) -> None:
        """Queue caller audio (16 kHz mono PCM16); returns without waiting on the network."""
        ...

    async def commit(self, timeout: float = DEFAULT_COMMIT_TIMEOUT) -> str:
        """End the caller's turn: the final text of everything said since the last commit/clear."""
        ...

    async def clear(self) -> None:
        """Forget the audio and text of the turn so far (noise, or the caller talked over us)."""
        ...

    async def close(self) -> None:
        """Hang up; safe to call twice and after a failure."""
        ...


class WebSocketStt:
    """A provider that streams audio over a websocket and hears back partial and final text.

    A subclass names the URL and headers and translates messages both ways; this class owns the
    connection, the send queue (so `send_audio` never waits on the network), failure handling and
    the turn's text:

    - a *partial* is the provider's current guess at the segment being spoken; each one replaces
      the previous one;
    - a *final* closes a segment (providers cut long turns into several); the turn's text is the
      finals joined, plus the partial still pending.

    `commit` returns at once when the turn already ends in a final. Otherwise it asks the provider
    to finish (the subclass's commit message) and waits, at most `timeout` seconds, for the next
    final. On timeout it returns what it has (finals and the last partial) rather than raising:
    a turn with a slightly rough last word beats a turn lost, and the final that arrives late is
    then dropped so it does not leak into the next turn.
    """

    sample_rate = SAMPLE_RATE
    name = "stt"
    default_url = ""
    default_model = ""
    connect_timeout = 10.0  # seconds for the handshake and the session to be ready
    close_timeout = 2.0
    keepalive_interval: float | None = None  # seconds of an idle send queue before a keepalive
    max_queued = 1000  # messages (about 20 s of 20 ms frames) before a stalled link is an error

    def __init__(self, config: SttConfig) -> None:
        self.config = config
        self.model = config.model or self.default_model
        # Called with the turn's text so far whenever it changes (captions, barge-in checks).
        self.on_text: Callable[[str], None] | None = None
        self._ws: ClientConnection | None = None
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue(self.max_queued)
        self._tasks: list[asyncio.Task[None]] = []
        self._error: SttError | None = None
        self._closing = False
        self._finals: list[str] = []
        self._partial = ""
        self._turn_bytes = 0  # audio sent since the last commit/clear
        self.bytes_sent = 0  # audio sent on this connection, for providers that timestamp results
        self._waiter: asyncio.Event | None = None
        self._drop_late_final = False

    # --- what a subclass defines ----------------------------------------------------------
    def url(self) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def ready(self, ws: ClientConnection) -> None:
        """Wait until the provider accepts audio (after the handshake); raise SttError if it refuses."""

    def audio_message(self, pcm: bytes) -> str | bytes:
        raise NotImplementedError

    def commit_message(self) -> str | None:
        raise NotImplementedError

    def clear_message(self) -> str | None:
        return None

    def close_message(self) -> str | None:
        return None

    def keepalive_message(self) -> str | None:
        return None

    def handle(self, message: str | bytes) -> None:
        """Turn one provider message into `partial`/`final`/`finished` calls."""
        raise NotImplementedError

    # --- for the subclass's `handle` --------------------------------------------------------
    def partial(self, text: str) -> None:
        self._drop_late_final = False  # a new segment has begun: the late final is not coming
        self._partial = text.strip()
        self._changed()

    def final(self, text: str, *, answers_commit: bool = True) -> None:
        """A segment's final text; unless `answers_commit` is false, it ends a waiting commit."""
        if self._drop_late_final:
            # The final of a turn whose commit timed out: that turn already went out with its partial.
            self._drop_late_final = False
            logger.info("%s: dropped a final that came after its turn: %r", self.name, text)
            return
        self._drop_late_final = False
        self._partial = ""
        if text.strip():
            self._finals.append(text.strip())
        self._changed()
        if answers_commit:
            self.finished()

    def finished(self) -> None:
        """The provider answered the pending commit (with a final, a failure or an error)."""
        if self._waiter:
            self._waiter.set()

    @property
    def text(self) -> str:
        """The turn's text so far: its finals, then the pending partial."""
        return " ".join([*self._finals, self._partial] if self._partial else self._finals)

    # --- the contract -----------------------------------------------------------------------
    async def start(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._ws = await connect(
                    self.url(), additional_headers=self.headers(), open_timeout=None, close_timeout=1
                )
                await self.ready(self._ws)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            await self._abort()
            raise SttError(f"{self.name}: could not open a session: {exc!r}") from exc
        except SttError:
            await self._abort()
            raise
        self._tasks = [
            asyncio.create_task(self._read(), name=f"{self.name}-read"),
            asyncio.create_task(self._write(), name=f"{self.name}-write"),
        ]

    async def send_audio(self, pcm16_16k: bytes) -> None:
        self._check()
        if not pcm16_16k:
            return
        self._turn_bytes += len(pcm16_16k)
        self.bytes_sent += len(pcm16_16k)
        self._send(self.audio_message(pcm16_16k))

    async def commit(self, timeout: float = DEFAULT_COMMIT_TIMEOUT) -> str:
        self._check()
        # Nothing to wait for when the turn ends in a final. With no text at all but audio sent
        # (a short "yes" not yet transcribed), waiting is the only way to get anything.
        if self._partial or (not self._finals and self._turn_bytes):
            self._waiter = asyncio.Event()
            try:
                if (message := self.commit_message()) is not None:
                    self._send(message)
                async with asyncio.timeout(timeout):
                    await self._waiter.wait()
            except TimeoutError:
                self._drop_late_final = bool(self._partial)
                logger.info("%s: no final within %.2fs; the turn ends with %r", self.name, timeout, self.text)
            finally:
                self._waiter = None
            self._check()
        text = self.text
        self._reset_turn()
        return text

    async def clear(self) -> None:
        self._check()
        self._reset_turn()
        self._drop_late_final = False
        if (message := self.clear_message()) is not None:
            self._send(message)
        self.finished()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._error = self._error or SttError(f"{self.name}: closed")
        self.finished()
        writer = self._tasks[1] if len(self._tasks) == 2 else None
        if writer and not writer.done():
            # Let the writer flush what is queued and say goodbye, briefly.
            if (message := self.close_message()) is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(message)
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(self.close_timeout):
                    await asyncio.shield(writer)
        await self._abort()

    # --- plumbing ---------------------------------------------------------------------------
    def _check(self) -> None:
        if self._error:
            raise self._error
        if not self._ws:
            raise SttError(f"{self.name}: not started")

    def _send(self, message: str | bytes) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._fail(f"{self.name}: the connection stalled ({self.max_queued} messages unsent)")
            self._check()

    def _fail(self, reason: str) -> None:
        if not self._error:
            if not self._closing:
                logger.warning("%s", reason)
            self._error = SttError(reason)
        self.finished()

    def _reset_turn(self) -> None:
        self._finals = []
        self._partial = ""
        self._turn_bytes = 0

    def _changed(self) -> None:
        if self.on_text:
            self.on_text(self.text)

    async def _read(self) -> None:
        assert self._ws
        try:
            async for message in self._ws:
                self.handle(message)
            reason = f"{self.name}: the provider closed the connection ({self._ws.close_code})"
        except ConnectionClosed as exc:
            reason = f"{self.name}: the connection dropped: {exc}"
        except Exception as exc:  # a message we could not make sense of: fail loudly, never hang
            logger.exception("%s: reading failed", self.name)
            reason = f"{self.name}: reading failed: {exc!r}"
        self._fail(reason)

    async def _write(self) -> None:
        assert self._ws
        keepalive = self.keepalive_message()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.keepalive_interval if keepalive else None):
                        message = await self._queue.get()
                except TimeoutError:
                    message = keepalive
                if message is None:
                    return
                await self._ws.send(message)
        except ConnectionClosed as exc:
            self._fail(f"{self.name}: the connection dropped while sending: {exc}")

    async def _abort(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.close_timeout):
                    await self._ws.close()
