"""A fake Switchboard agent socket: the server side of PROTOCOL.md on a real websocket, driven by
the tests (they send the server's frames and read what the agent sent back)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

WAIT = 5.0  # every wait in these tests is bounded by this many seconds
MAX_FRAME = 64 * 1024


@dataclass
class Reply:
    """A reply as the server keeps it: what it accepted, and whether it was ended or voided."""

    writes: list[str] = field(default_factory=list)
    ended: bool = False
    void: str | None = None


class AgentSession:
    """One accepted agent connection."""

    def __init__(self, server: FakeSwitchboard, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def turn_end(
        self,
        turn_id: str,
        text: str = "What time do you open on Saturday?",
        *,
        call_sid: str = "CA1",
        language: str = "en-US",
        history: list[dict[str, str]] | None = None,
    ) -> None:
        """A caller finished a turn: the server now expects a reply to `turn_id`."""
        self.server.replies[turn_id] = Reply()
        await self.send(
            {
                "type": "turn.end",
                "turn_id": turn_id,
                "call": {
                    "call_sid": call_sid,
                    "persona": "receptionist",
                    "from": "+14155550100",
                    "to": "+14155550199",
                    "language": language,
                },
                "text": text,
                "history": history if history is not None else [{"role": "user", "text": text}],
            }
        )

    async def void(self, turn_id: str, kind: str, **extra: Any) -> None:
        """Send turn.continued / bot.interrupted for `turn_id` and drop its later writes."""
        self.server.replies[turn_id].void = kind
        await self.send({"type": kind, "turn_id": turn_id, **extra})

    async def call_ended(self, call_sid: str, turn_id: str | None) -> None:
        if turn_id is not None:
            self.server.replies[turn_id].void = "call.ended"
        await self.send({"type": "call.ended", "call_sid": call_sid, "turn_id": turn_id})

    async def next_frame(self) -> dict[str, Any]:
        """The next frame the agent sent (bounded wait)."""
        return await asyncio.wait_for(self.frames.get(), WAIT)

    async def frames_until(self, kind: str, turn_id: str) -> list[dict[str, Any]]:
        """The frames the agent sends up to and including the first `kind` frame for `turn_id`."""
        frames = []
        while True:
            frame = await self.next_frame()
            frames.append(frame)
            if frame["type"] == kind and frame.get("turn_id") == turn_id:
                return frames

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake, as a crashed server would."""
        assert self.ws.transport is not None
        self.ws.transport.abort()

    async def serve(self) -> None:
        await self.send({"type": "hello", "protocol": 1, "agent_id": "agt_test", "key_name": "tests"})
        try:
            async for message in self.ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def _on_message(self, message: str | bytes) -> None:
        try:
            assert isinstance(message, str) and len(message.encode()) <= MAX_FRAME
            frame = json.loads(message)
            assert isinstance(frame, dict) and isinstance(frame.get("type"), str)
        except (AssertionError, ValueError):
            self.server.malformed += 1  # the protocol: dropped and counted, never fatal
            return
        self.received.append(frame)
        if frame["type"] in ("reply.write", "reply.end"):
            self._on_reply(frame)
        elif frame["type"] == "history.get" and self.server.answer_history:
            history = self.server.histories.get(frame["call_sid"])
            if history is None:
                await self.send(
                    {"type": "error", "request_id": frame["request_id"], "message": "unknown call"}
                )
            else:
                await self.send(
                    {
                        "type": "history",
                        "request_id": frame["request_id"],
                        "call_sid": frame["call_sid"],
                        "history": history,
                    }
                )
        await self.frames.put(frame)

    def _on_reply(self, frame: dict[str, Any]) -> None:
        reply = self.server.replies.get(frame["turn_id"])
        if reply is None or reply.void or reply.ended:
            self.server.dropped.append(frame)
        elif frame["type"] == "reply.write":
            reply.writes.append(frame["text"])
        else:
            reply.ended = True


class FakeSwitchboard:
    """The fake server: `async with FakeSwitchboard() as server:` then point an Agent at `url`."""

    def __init__(self, api_key: str = "sb_test_key") -> None:
        self.api_key = api_key
        self.refuse_next = 0
        """Answer this many handshakes with HTTP 503 (a server that is restarting)."""
        self.answer_history = True
        self.histories: dict[str, list[dict[str, str]]] = {}
        self.replies: dict[str, Reply] = {}
        self.dropped: list[dict[str, Any]] = []
        """reply frames for void, ended or unknown turns (the server drops and counts them)."""
        self.malformed = 0
        self.handshakes: list[Headers] = []
        self.sessions: asyncio.Queue[AgentSession] = asyncio.Queue()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/agent/"

    async def next_session(self) -> AgentSession:
        """The next agent connection that passed the handshake (bounded wait)."""
        return await asyncio.wait_for(self.sessions.get(), WAIT)

    async def __aenter__(self) -> FakeSwitchboard:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), WAIT)

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request.headers)
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "restarting\n")
        if request.path != "/ws/agent/" or request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        session = AgentSession(self, ws)
        await self.sessions.put(session)
        await session.serve()
