"""A fake HTTP tool endpoint on loopback, for the persona HTTP tool tests (calls/engine/tool_loop.py).

Routes, for GET and POST alike:
    /fast     answers at once: {"status": "shipped", "got": <the arguments>}
    /slow     answers like /fast once the test calls `release()` (never, for a timeout)
    /error    a 500 with a text body
    /badjson  says application/json, sends something that is not JSON
Every request is recorded as a `ToolHit`: what came in, and whether it was answered or the client
hung up first (a cancelled tool call).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.threaded import AiohttpServer


@dataclass
class ToolHit:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    answered: bool = False
    aborted: bool = False  # the client hung up before the answer
    ended: threading.Event = field(default_factory=threading.Event)

    async def wait_ended(self, timeout: float = 5.0) -> ToolHit:
        if not await asyncio.to_thread(self.ended.wait, timeout):
            raise TimeoutError(f"the fake tool's {self.path} request did not end in time")
        return self


class FakeToolServer(AiohttpServer):
    name = "tools"

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.hits: list[ToolHit] = []
        self._seen = threading.Condition()
        self._released: asyncio.Event | None = None  # on the server's loop

    def release(self) -> None:
        """Let every held /slow request (and later ones) answer."""
        if self._loop is not None and self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def before_stop(self) -> None:
        self.release()

    async def wait_for_hits(self, count: int, timeout: float = 5.0) -> list[ToolHit]:
        def wait() -> bool:
            with self._seen:
                return self._seen.wait_for(lambda: len(self.hits) >= count, timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake tool server saw {len(self.hits)} of {count} requests")
        return self.hits[:count]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        hit = ToolHit(request.method, request.path, dict(request.query), body, dict(request.headers))
        with self._seen:
            self.hits.append(hit)
            self._seen.notify_all()
        arguments = body if request.method == "POST" else dict(request.query)
        try:
            if request.path == "/slow":
                assert self._released is not None
                await self._released.wait()  # or the client hangs up: the handler is cancelled
            if request.path == "/error":
                response: web.StreamResponse = web.Response(status=500, text="database is down")
            elif request.path == "/badjson":
                response = web.Response(text="{not json", content_type="application/json")
            else:
                response = web.json_response({"status": "shipped", "got": arguments})
            hit.answered = True
            return response
        except asyncio.CancelledError:
            hit.aborted = True
            raise
        finally:
            hit.ended.set()

    def app(self) -> web.Application:
        self._released = asyncio.Event()  # on the server's own loop, which builds the app
        app = web.Application()
        app.router.add_route("*", "/{name}", self.handle)
        return app
