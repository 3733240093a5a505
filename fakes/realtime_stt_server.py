"""Fake streaming speech-to-text servers on loopback, for tests: Together's realtime protocol
(FakeRealtimeStt) and Deepgram's live protocol (FakeDeepgram).

Each speaks the real wire format over a real websocket, so the real provider client is pointed at
it with `SttConfig(base_url=fake.url)`. It records what arrived (audio bytes per append, commits,
clears, the handshake's headers and query) and answers each end of turn with the next scripted
SttTurn: partial transcripts, then the final one. A turn can also hold its final back, fail, or
drop the connection, and the test can drop every connection or push a segment at any time.

    fake = FakeRealtimeStt().start()
    fake.reply_with("Hello there.")        # or fake.queue(SttTurn("Hi.", hold_final=True))
    stt = TogetherStt(SttConfig("together", api_key="k", base_url=fake.url))
    ...
    await fake.wait_for(lambda f: f.commits == 1)
    fake.stop()
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fakes.threaded import ThreadedServer

__all__ = ["FakeDeepgram", "FakeRealtimeStt", "SttTurn"]

BYTES_PER_SECOND = 16000 * 2


@dataclass
class SttTurn:
    """What a fake answers to one end of turn (a commit, or Deepgram's Finalize)."""

    text: str = "Hello there."
    partials: list[str] | None = None  # None: the text's growing word prefixes
    hold_final: bool = False  # send the partials, keep the final until `release()`
    failed: bool = False  # answer with a failure instead of a final (Together only)
    drop: bool = False  # drop the connection instead of answering

    def partial_texts(self) -> list[str]:
        if self.partials is not None:
            return self.partials
        words = self.text.split()
        return [" ".join(words[: n + 1]) for n in range(len(words) - 1)]


@dataclass
class ConnectionRecord:
    headers: Headers  # case-insensitive, as HTTP headers are
    path: str
    query: dict[str, str]
    ws: ServerConnection = field(repr=False)


class FakeSttServer(ThreadedServer):
    """The thread, loop, records and scripting both fakes share; subclasses speak the protocol."""

    name = "STT"
    path = "/"

    def __init__(self, *, default: SttTurn | None = None) -> None:
        self.default = default or SttTurn()
        self.reject_status: int | None = None  # answer the upgrade with this HTTP status (a bad key)
        self.turns: deque[SttTurn] = deque()
        self.connections: list[ConnectionRecord] = []
        self.appends: list[int] = []  # bytes of audio in each append, in arrival order
        self.audio = bytearray()
        self.commits = 0
        self.clears = 0
        self.messages: list[str] = []  # the type of every client message, in order
        self.invalid: list[str] = []  # client messages the fake refused
        self.held: list[tuple[ServerConnection, list[str]]] = []
        self._changed = threading.Condition()
        super().__init__()
        self.url = ""

    # --- scripting ----------------------------------------------------------------------
    def queue(self, *turns: SttTurn) -> None:
        self.turns.extend(turns)

    def reply_with(self, *texts: str) -> None:
        self.queue(*(SttTurn(text) for text in texts))

    def release(self) -> None:
        """Send the finals that turns with `hold_final` kept back."""
        self._run(self._release())

    def drop(self) -> None:
        """Cut every open connection without a close frame, as a network failure does."""
        self._run(self._drop_all())

    def segment(self, text: str, *, final: bool = True) -> None:
        """Push a partial or final transcript now, unasked (the provider's own VAD at work)."""
        self._run(self._broadcast(self.segment_messages(text, final=final)))

    @property
    def headers(self) -> Headers:
        """The handshake headers of the latest connection."""
        return self.connections[-1].headers

    @property
    def query(self) -> dict[str, str]:
        return self.connections[-1].query

    async def wait_for(self, predicate: Callable[[Self], bool], timeout: float = 5.0) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: predicate(self), timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake {self.name} server never got there: {self.stats}")

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "appends": len(self.appends),
            "bytes": len(self.audio),
            "commits": self.commits,
            "clears": self.clears,
            "messages": self.messages[-10:],
        }

    # --- protocol: what a subclass defines ----------------------------------------------
    async def opened(self, ws: ServerConnection) -> None:
        """Right after the handshake."""

    async def received(self, ws: ServerConnection, message: str | bytes) -> None:
        raise NotImplementedError

    def segment_messages(self, text: str, *, final: bool, answers: bool = False) -> list[str]:
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------
    def note(self, kind: str, *, audio: bytes | None = None) -> None:
        with self._changed:
            self.messages.append(kind)
            if audio is not None:
                self.appends.append(len(audio))
                self.audio.extend(audio)
            self._changed.notify_all()

    def count(self, attribute: str) -> None:
        with self._changed:
            setattr(self, attribute, getattr(self, attribute) + 1)
            self._changed.notify_all()

    async def answer_turn(self, ws: ServerConnection) -> None:
        turn = self.turns.popleft() if self.turns else self.default
        if turn.drop:
            ws.transport.abort()
            return
        for partial in turn.partial_texts():
            for message in self.segment_messages(partial, final=False, answers=True):
                await ws.send(message)
        final = self.failure_messages() if turn.failed else None
        final = final or self.segment_messages(turn.text, final=True, answers=True)
        if turn.hold_final:
            self.held.append((ws, final))
            return
        for message in final:
            await ws.send(message)

    def failure_messages(self) -> list[str]:
        return []

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request
        if urlsplit(ws.request.path).path != self.path:
            await ws.close(4404, "unknown path")
            return
        with contextlib.suppress(ConnectionClosed):
            await self.opened(ws)
            async for message in ws:
                await self.received(ws, message)

    def _upgrade(self, ws: ServerConnection, request: Request) -> Response | None:
        # Recorded before the handshake completes, so a client that has connected can assert on it.
        url = urlsplit(request.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        with self._changed:
            self.connections.append(ConnectionRecord(request.headers, url.path, query, ws))
            self._changed.notify_all()
        if self.reject_status is None:
            return None
        return ws.respond(HTTPStatus(self.reject_status), "refused by the fake\n")

    async def _release(self) -> None:
        held, self.held = self.held, []
        for ws, messages in held:
            with contextlib.suppress(ConnectionClosed):
                for message in messages:
                    await ws.send(message)

    async def _drop_all(self) -> None:
        for record in self.connections:
            record.ws.transport.abort()

    async def _broadcast(self, messages: list[str]) -> None:
        for record in self.connections:
            with contextlib.suppress(ConnectionClosed):
                for message in messages:
                    await record.ws.send(message)

    def _run(self, coroutine: Any) -> None:
        assert self._loop, "start the fake first"
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(5)

    # --- lifecycle ----------------------------------------------------------------------
    async def serve(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, compression=None, process_request=self._upgrade
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}{self.path}"


def _json(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


class FakeRealtimeStt(FakeSttServer):
    """Together's realtime transcription endpoint (OpenAI-realtime style)."""

    name = "Together realtime STT"
    path = "/v1/realtime"
    prefix = "conversation.item.input_audio_transcription."

    def __init__(self, *, default: SttTurn | None = None, session_created: bool = True) -> None:
        super().__init__(default=default)
        self.session_created = session_created  # False: a server that never gets ready

    @property
    def model(self) -> str:
        return self.query.get("model", "")

    async def opened(self, ws: ServerConnection) -> None:
        if self.session_created:
            await ws.send(_json({"type": "session.created", "session": {"model": self.query_of(ws)}}))

    def query_of(self, ws: ServerConnection) -> str:
        return next((r.query.get("model", "") for r in self.connections if r.ws is ws), "")

    async def received(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            event = json.loads(message)
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            await self.refuse(ws, "unparseable", "messages are JSON objects with a type")
            return
        if kind == "input_audio_buffer.append":
            try:
                audio = base64.b64decode(event["audio"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                await self.refuse(ws, kind, "audio must be base64")
                return
            if len(audio) % 2:
                await self.refuse(ws, kind, "PCM16 audio has an even number of bytes")
                return
            self.note(kind, audio=audio)
        elif kind == "input_audio_buffer.commit":
            self.note(kind)
            self.count("commits")
            await self.answer_turn(ws)
        elif kind == "input_audio_buffer.clear":
            self.note(kind)
            self.count("clears")
            await ws.send(_json({"type": "input_audio_buffer.cleared"}))
        else:
            await self.refuse(ws, kind, f"unknown event type {kind!r}")

    async def refuse(self, ws: ServerConnection, kind: str, message: str) -> None:
        with self._changed:
            self.invalid.append(kind)
            self._changed.notify_all()
        error = {"type": "invalid_request_error", "message": message}
        await ws.send(_json({"type": "error", "error": error}))

    def error(self, message: str = "fake server error") -> None:
        """Send an `error` event to every connection now (the session stays open)."""
        error = {"type": "server_error", "message": message}
        self._run(self._broadcast([_json({"type": "error", "error": error})]))

    def segment_messages(self, text: str, *, final: bool, answers: bool = False) -> list[str]:
        if final:
            return [_json({"type": self.prefix + "completed", "transcript": text})]
        return [_json({"type": self.prefix + "delta", "delta": text})]

    def failure_messages(self) -> list[str]:
        error = {"type": "server_error", "message": "fake transcription failure"}
        return [_json({"type": self.prefix + "failed", "error": error})]


class FakeDeepgram(FakeSttServer):
    """Deepgram's live streaming endpoint: binary audio in, JSON Results out."""

    name = "Deepgram"
    path = "/v1/listen"

    def __init__(self, *, default: SttTurn | None = None) -> None:
        super().__init__(default=default)
        self.keepalives = 0
        self.segment_start = 0.0  # seconds into the stream where the current segment began

    async def received(self, ws: ServerConnection, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if len(message) % 2:
                self.invalid.append("audio")
                await ws.close(1008, "DATA-0000: linear16 audio has an even number of bytes")
                return
            self.note("audio", audio=message)
            return
        try:
            kind = json.loads(message)["type"]
        except (ValueError, KeyError, TypeError):
            await ws.close(1008, "DATA-0000: unknown control message")
            return
        self.note(kind)
        if kind == "Finalize":
            self.count("commits")
            await self.answer_turn(ws)
        elif kind == "KeepAlive":
            self.count("keepalives")
        elif kind == "CloseStream":
            await ws.send(_json({"type": "Metadata", "duration": len(self.audio) / BYTES_PER_SECOND}))
            await ws.close()

    def segment_messages(self, text: str, *, final: bool, answers: bool = False) -> list[str]:
        now = len(self.audio) / BYTES_PER_SECOND
        result = {
            "type": "Results",
            "channel_index": [0, 1],
            "start": self.segment_start,
            "duration": round(now - self.segment_start, 3),
            "is_final": final,
            "speech_final": final,
            "from_finalize": final and answers,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.99, "words": []}]},
        }
        if final:
            self.segment_start = now
        return [_json(result)]
