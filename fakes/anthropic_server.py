"""A fake Anthropic Messages API on loopback, for tests and benchmarks.

It speaks the real wire format (SSE events for `stream: true`, a message JSON otherwise), so the
real anthropic SDK is pointed at it with ANTHROPIC_BASE_URL and nothing inside the SDK is patched.
It records every request body and, for each stream, how many tokens went out and whether the
client closed it before the end (what an interrupt must do).

Run standalone for the benchmark:
    python -m fakes.anthropic_server --port 8765 --ttft 0.3 --rate 25 --tokens 50 [--tagged]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeReply:
    """What the fake answers to one request."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    ttft: float | None = None  # seconds before the first token; None: the server default
    interval: float | None = None  # seconds between tokens; None: the server default
    status: int = 200  # non-200: an Anthropic error body instead of a stream
    error_type: str = "api_error"
    cut_after: int | None = None  # drop the connection after this many tokens
    error_event_after: int | None = None  # send an SSE `error` event after this many tokens
    hold_after: int | None = None  # after this many tokens, wait (for the client to hang up)
    tool_use: dict | None = None  # {"name": ..., "input": {...}}: a tool_use block after the text
    stop_reason: str = "end_turn"


@dataclass
class StreamRecord:
    """One streamed response, as the fake saw it."""

    request: dict
    tokens_sent: int = 0
    completed: bool = False
    closed_early: bool = False
    ended: threading.Event = field(default_factory=threading.Event)

    async def wait_ended(self, timeout: float = 5.0) -> StreamRecord:
        if not await asyncio.to_thread(self.ended.wait, timeout):
            raise TimeoutError("the fake Anthropic stream did not end in time")
        return self


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FakeAnthropic:
    """Serve in a background thread with its own event loop; queue replies, read records."""

    def __init__(self, *, ttft: float = 0.0, interval: float = 0.0, default: FakeReply | None = None):
        self.ttft = ttft
        self.interval = interval
        self.default = self._initial_default = default or FakeReply()
        self.replies: deque[FakeReply] = deque()
        self.requests: list[dict] = []
        self.streams: list[StreamRecord] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._request_seen = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- scripting and inspection -------------------------------------------------------
    def queue(self, *replies: FakeReply) -> None:
        self.replies.extend(replies)

    def reply_with(self, *texts_as_tokens: list[str]) -> None:
        self.queue(*(FakeReply(tokens=tokens) for tokens in texts_as_tokens))

    def reset(self, *, default: FakeReply | None = None) -> None:
        """Forget queued replies and recorded requests: one long-lived server, many tests."""
        with self._lock:
            self.replies.clear()
            self.requests.clear()
            self.streams.clear()
            self.default = default or self._initial_default

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict]:
        def wait() -> bool:
            with self._request_seen:
                return self._request_seen.wait_for(lambda: len(self.requests) >= count, timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake Anthropic server saw {len(self.requests)} of {count} requests")
        return self.requests[:count]

    @property
    def stats(self) -> dict[str, int]:
        return {
            "requests": len(self.requests),
            "streams": len(self.streams),
            "completed": sum(s.completed for s in self.streams),
            "closed_early": sum(s.closed_early for s in self.streams),
            "tokens_sent": sum(s.tokens_sent for s in self.streams),
        }

    # --- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_get("/stats", self.get_stats)
        return app

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._request_seen:
            self.requests.append(body)
            self._request_seen.notify_all()
        reply = self.replies.popleft() if self.replies else self.default
        if reply.status != 200:
            error = {"type": "error", "error": {"type": reply.error_type, "message": "fake failure"}}
            return web.json_response(error, status=reply.status)
        if not body.get("stream"):
            return web.json_response(self.message_json(body, reply))
        return await self.stream(request, body, reply)

    def message_json(self, body: dict, reply: FakeReply) -> dict:
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(reply.tokens)}]
        if reply.tool_use:
            content.append({"type": "tool_use", "id": f"toolu_{next(self._ids)}", **reply.tool_use})
        return {
            "id": f"msg_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": "tool_use" if reply.tool_use else reply.stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": len(reply.tokens)},
        }

    async def stream(self, request: web.Request, body: dict, reply: FakeReply) -> web.StreamResponse:
        record = StreamRecord(request=body)
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        ttft = self.ttft if reply.ttft is None else reply.ttft
        interval = self.interval if reply.interval is None else reply.interval
        try:
            await response.prepare(request)
            message = self.message_json(body, FakeReply(tokens=[]))
            message.update(content=[], stop_reason=None)
            await response.write(sse("message_start", {"type": "message_start", "message": message}))
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            await response.write(sse("content_block_start", block))
            if ttft:
                await asyncio.sleep(ttft)
            for n, token in enumerate(reply.tokens):
                if n == reply.cut_after:
                    if request.transport:
                        request.transport.abort()
                    return response
                if n == reply.error_event_after:
                    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                    await response.write(sse("error", error))
                    return response
                if n == reply.hold_after:
                    await asyncio.Event().wait()  # until the client hangs up
                if n and interval:
                    await asyncio.sleep(interval)
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": token},
                }
                await response.write(sse("content_block_delta", delta))
                record.tokens_sent += 1
            if reply.hold_after is not None and reply.hold_after >= len(reply.tokens):
                await asyncio.Event().wait()
            await response.write(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            if reply.tool_use:
                await self.write_tool_use(response, reply.tool_use)
            stop = "tool_use" if reply.tool_use else reply.stop_reason
            delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
            await response.write(
                sse("message_delta", {**delta, "usage": {"output_tokens": record.tokens_sent}})
            )
            await response.write(sse("message_stop", {"type": "message_stop"}))
            # Everything was sent: a client closing right after the last event is not an early close.
            record.completed = True
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionError):
            record.closed_early = not record.completed
            raise
        finally:
            record.ended.set()

    async def write_tool_use(self, response: web.StreamResponse, tool: dict) -> None:
        start = {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": f"toolu_{next(self._ids)}",
                "name": tool["name"],
                "input": {},
            },
        }
        await response.write(sse("content_block_start", start))
        partial = json.dumps(tool.get("input", {}))
        delta = {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": partial},
        }
        await response.write(sse("content_block_delta", delta))
        await response.write(sse("content_block_stop", {"type": "content_block_stop", "index": 1}))

    # --- lifecycle ----------------------------------------------------------------------
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # handler_cancellation: a client hanging up cancels the handler, which is how an
        # early close (an interrupt) is observed.
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.url

    def start(self) -> FakeAnthropic:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Anthropic server did not start")
        return self

    def stop(self) -> None:
        if not self._loop:
            return
        loop = self._loop
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)  # type: ignore[union-attr]
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=25.0, help="tokens per second")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply")
    parser.add_argument(
        "--tagged", action="store_true", help='tokens name their request: " r17w0", " r17w1", ...'
    )
    args = parser.parse_args()
    words = [f" word{n}" for n in range(args.tokens)]
    fake = FakeAnthropic(ttft=args.ttft, interval=1 / args.rate, default=FakeReply(tokens=words))
    # Benchmarks make thousands of requests: keep only counts, not bodies.
    fake.requests = _CountingList()
    if args.tagged:
        fake.replies = _TaggedReplies(args.tokens)

    async def run() -> None:
        url = await fake.serve(args.host, args.port)
        print(url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


class _TaggedReplies(deque):
    """An endless reply queue whose n-th reply is " r{n}w0", " r{n}w1", ...: a client can then tell
    the tokens of an interrupted reply from those of the next one."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.numbers = itertools.count(1)

    def __bool__(self) -> bool:
        return True

    def popleft(self) -> FakeReply:
        n = next(self.numbers)
        return FakeReply(tokens=[f" r{n}w{i}" for i in range(self.tokens)])


class _CountingList(list):
    def append(self, item: object) -> None:
        self.count_ = getattr(self, "count_", 0) + 1

    def __len__(self) -> int:
        return getattr(self, "count_", 0)


if __name__ == "__main__":
    main()
