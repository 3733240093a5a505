"""What the websocket TTS providers share: one connection per call, opened ahead of the first
sentence; a reader task that routes the provider's events to the one synthesis in flight; bounded
waits everywhere; barge-in that never lets a cancelled text's audio out.

A subclass speaks its vendor's wire format only: where to connect, the handshake, the messages
that start and cancel a text, and `route` for what the server sends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from agents.tts.base import Pcm16Stream, TtsError

logger = logging.getLogger(__name__)


def websocket_base(base_url: str, default: str, path: str) -> str:
    """The origin to append `path` to. Forgiving of what people paste into a base-URL setting:
    an http(s) scheme, a trailing slash, or the whole endpoint."""
    url = (base_url or default).rstrip("/")
    if url.startswith(("http://", "https://")):
        url = "ws" + url.removeprefix("http")
    return url.removesuffix(path)


class Marker:
    """A job's queue item that is not audio."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


DONE = Marker("DONE")  # the provider says the text's audio is complete
CANCELLED = Marker("CANCELLED")  # interrupted: end without error
Event = bytes | Marker | TtsError


@dataclass(eq=False)
class Job:
    """One text in synthesis. The reader puts audio bytes, DONE, CANCELLED or a TtsError on
    `events`; `synthesize` takes them off."""

    text: str
    id: str = ""
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    over: bool = False  # done, failed or cancelled: nothing more is delivered to it
    cancelled: bool = False


class WebSocketTts:
    """The machinery of a websocket TextToSpeech; see the module docstring."""

    name = "TTS"  # in error messages
    sample_rate = 24000
    # Some protocols have no marker for "this text's audio is complete", only one per server-side
    # item: after DONE, wait this long for more audio of the same text before ending it.
    done_grace = 0.0

    def __init__(
        self,
        *,
        open_timeout: float = 10.0,
        idle_timeout: float = 10.0,
        send_timeout: float = 5.0,
    ) -> None:
        self.open_timeout = open_timeout  # connect + handshake
        self.idle_timeout = idle_timeout  # no word from the provider mid-synthesis: TtsError
        self.send_timeout = send_timeout
        self._ws: ClientConnection | None = None
        self._connecting: asyncio.Task | None = None
        self._job: Job | None = None
        self._closed = False
        self._background: set[asyncio.Task] = set()  # readers and closings, awaited by close()

    # --- what a subclass defines --------------------------------------------------------
    def url(self) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}

    async def handshake(self, ws: ClientConnection) -> None:
        """After the websocket opens, before the first text (e.g. wait for `session.created`)."""

    def text_messages(self, job: Job) -> list[dict[str, Any]]:
        """What to send to synthesise `job.text`."""
        raise NotImplementedError

    async def cancel_on_wire(self, job: Job | None) -> None:
        """Tell the provider to stop (barge-in); `job` is the cancelled one, if any was running."""

    def route(self, message: dict[str, Any]) -> None:
        """One message from the server: deliver what concerns the current job."""
        raise NotImplementedError

    # --- the TextToSpeech interface -----------------------------------------------------
    async def start(self) -> None:
        await self._connected()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        job = await self._begin(text)
        pcm = Pcm16Stream()
        settled = False  # the server finished with this text (its audio is done, or it failed)
        try:
            item = await self._next(job)
            while True:
                if item is DONE:
                    item = await self._after_done(job)
                    if item is DONE:
                        settled = True
                        return
                    continue
                if item is CANCELLED:
                    return
                if isinstance(item, TtsError):
                    settled = True
                    raise item
                assert isinstance(item, bytes)
                if chunk := pcm.feed(item):
                    yield chunk
                if job.cancelled:  # interrupted while the caller held the last chunk
                    return
                item = await self._next(job)
        finally:
            job.over = True
            if self._job is job:
                if not settled:
                    # The caller stopped listening early: what is still coming must not reach
                    # the next text, so cancel it as a barge-in would.
                    await self.interrupt()
                self._job = None

    async def interrupt(self) -> None:
        job, self._job = self._job, None
        if job is not None and not job.over:
            job.over = job.cancelled = True
            job.events.put_nowait(CANCELLED)
        if self._ws is None or self._closed:
            return
        try:
            await self.cancel_on_wire(job)
        except Exception as exc:  # never raise from a barge-in: drop the link instead
            logger.info("%s: cancel failed (%s); reconnecting", self.name, exc)
            self._drop_connection(reconnect=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        job, self._job = self._job, None
        if job is not None and not job.over:
            job.over = job.cancelled = True
            job.events.put_nowait(CANCELLED)  # the call is over: end quietly, as on a barge-in
        if self._connecting is not None:
            self._connecting.cancel()
        self._drop_connection()
        tasks = [*self._background, *(t for t in (self._connecting,) if t)]
        if tasks:
            # Bounded: a closing connection aborts itself within _discard's timeout anyway.
            await asyncio.wait(tasks, timeout=5)

    # --- a text's synthesis -------------------------------------------------------------
    async def _begin(self, text: str) -> Job:
        """Make `text` the current job and send it; a connection found dead on sending (the server
        closed it between sentences) is replaced once, since nothing of this text was said yet."""
        if self._job is not None:
            # The last caller stopped iterating without closing its iterator (the finaliser
            # would cancel it later): cancel it now, so none of its audio reaches this text.
            await self.interrupt()
        for attempt in (1, 2):
            ws = await self._connected()
            job = Job(text)
            self._job = job
            try:
                for message in self.text_messages(job):
                    await self._send(ws, message)
                return job
            except TtsError:
                self._job = None
                self._drop_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _next(self, job: Job) -> Event:
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await job.events.get()
        except TimeoutError:
            # The server's state is unknown now: start the next text on a fresh connection.
            self._drop_connection()
            return TtsError(f"{self.name}: no audio for {self.idle_timeout:g} s")

    async def _after_done(self, job: Job) -> Event:
        """DONE when the text is complete; else the next event (more audio of the same text)."""
        if not self.done_grace:
            return DONE
        try:
            async with asyncio.timeout(self.done_grace):
                return await job.events.get()
        except TimeoutError:
            return DONE

    def deliver(self, item: Event) -> None:
        """For `route`: hand `item` to the current job, if one is listening."""
        job = self._job
        if job is None or job.over:
            return
        if (item is DONE and not self.done_grace) or isinstance(item, TtsError):
            job.over = True
        job.events.put_nowait(item)

    def deliver_base64(self, data: str | None, what: str) -> None:
        """For `route`: audio the provider sent as base64 (the connection fails if it is not)."""
        try:
            audio = base64.b64decode(data or "", validate=True)
        except (binascii.Error, ValueError):
            self.fail(f"{what} is not base64")
            return
        if audio:
            self.deliver(audio)

    def fail(self, message: str) -> None:
        """For `route`: the provider reported an error; the current text fails and the next one
        gets a fresh connection (a session that erred may be in any state)."""
        self.deliver(TtsError(f"{self.name}: {message}"))
        self._drop_connection()

    # --- the connection -----------------------------------------------------------------
    async def _connected(self) -> ClientConnection:
        if self._closed:
            raise TtsError(f"{self.name}: closed")
        if self._connecting is not None:
            task, self._connecting = self._connecting, None
            # wait() neither raises the task's failure (we try once more below) nor cancels it.
            await asyncio.wait([task])
        if self._ws is None:
            await self._open()
        assert self._ws is not None
        return self._ws

    async def _open(self) -> None:
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(self.open_timeout):
                ws = await connect(
                    self.url(),
                    additional_headers=self.headers(),
                    open_timeout=None,  # the timeout above bounds connect and handshake together
                    close_timeout=2,
                    max_size=16 * 2**20,
                    compression=None,  # audio does not compress; spare the CPU
                )
                await self.handshake(ws)
        except BaseException as exc:
            if ws is not None:
                self._spawn(self._discard(ws))
            if isinstance(exc, TimeoutError):
                raise TtsError(f"{self.name}: no session within {self.open_timeout:g} s") from None
            if isinstance(exc, OSError | InvalidHandshake | WebSocketException):
                raise TtsError(f"{self.name}: cannot connect: {exc}") from exc
            raise
        if self._closed:
            self._spawn(self._discard(ws))
            raise TtsError(f"{self.name}: closed")
        self._ws = ws
        self._spawn(self._read(ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                if ws is not self._ws:
                    # Dropped (barge-in, failure): its late audio goes nowhere, but is still read,
                    # so the server's close frame is not stuck behind it and the close completes.
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    logger.warning("%s: ignoring a frame that is not JSON", self.name)
                    continue
                if isinstance(message, dict):
                    self.route(message)
        except WebSocketException:
            pass  # an abnormal close; reported below like a normal one
        finally:
            if ws is self._ws:
                self._ws = None
                reason = f"{ws.close_code or 1006} {ws.close_reason or ''}".strip()
                self.deliver(TtsError(f"{self.name}: connection closed ({reason})"))

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await ws.send(json.dumps(message))
        except TimeoutError:
            raise TtsError(f"{self.name}: send timed out") from None
        except WebSocketException as exc:
            raise TtsError(f"{self.name}: connection lost: {exc}") from exc

    async def send(self, message: dict[str, Any]) -> None:
        """For `cancel_on_wire`: send on the current connection; TtsError if there is none."""
        if self._ws is None:
            raise TtsError(f"{self.name}: not connected")
        await self._send(self._ws, message)

    def _drop_connection(self, *, reconnect: bool = False) -> None:
        """Forget the connection at once (its reader stops routing) and close it in the
        background; with `reconnect`, open the next one in the background too, so the next
        sentence does not pay for the handshake."""
        ws, self._ws = self._ws, None
        if ws is not None:
            self._spawn(self._discard(ws))
        if reconnect and not self._closed and self._connecting is None:
            self._connecting = asyncio.create_task(self._open(), name=f"{self.name}-reconnect")
            # Awaited by the next `_connected`; retrieve a failure nobody awaits (call ended).
            self._connecting.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _discard(self, ws: ClientConnection | None) -> None:
        if ws is None:
            return
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):  # longer than close_timeout: let it abort itself
                    await ws.close()
        finally:
            ws.transport.abort()  # no-op once closed; else no socket outlives us, even cancelled

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
