"""A fake OpenAI-compatible Chat Completions API on loopback, for tests and benchmarks.

It speaks the real wire format (`chat.completion.chunk` SSE lines ending in `data: [DONE]` for
`stream: true`, a `chat.completion` JSON otherwise), so the real openai SDK is pointed at it with
`base_url` and nothing inside the SDK is patched. It records every request body and, for each
stream, how many tokens went out and whether the client closed it before the end.

Run standalone for the benchmark:
    python -m fakes.openai_server --port 8766 --ttft 0.3 --rate 25 --tokens 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ARGUMENT_FRAGMENT = 7  # characters of tool arguments per chunk, so clients must reassemble them


@dataclass
class FakeReply:
    """What the fake answers to one request."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    ttft: float | None = None  # seconds before the first token; None: the server default
    interval: float | None = None  # seconds between tokens; None: the server default
    status: int = 200  # non-200: an OpenAI error body instead of a stream
    error_type: str = "server_error"
    cut_after: int | None = None  # drop the connection after this many tokens
    error_event_after: int | None = None  # send an in-stream `{"error": ...}` after this many tokens
    hold_after: int | None = None  # after this many tokens, wait (for the client to hang up)
    # {"name": ..., "input": {...}} or a list of them: tool calls streamed after the text
    tool_use: dict | list[dict] | None = None
    finish_reason: str = "stop"

    @property
    def tools(self) -> list[dict]:
        if self.tool_use is None:
            return []
        return [self.tool_use] if isinstance(self.tool_use, dict) else list(self.tool_use)


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
            raise TimeoutError("the fake OpenAI stream did not end in time")
        return self


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class FakeOpenAI:
    """Serve in a background thread with its own event loop; queue replies, read records."""

    def __init__(self, *, ttft: float = 0.0, interval: float = 0.0, default: FakeReply | None = None):
        self.ttft = ttft
        self.interval = interval
        self.default = default or FakeReply()
        self.replies: deque[FakeReply] = deque()
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
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

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()
        self.headers.clear()
        self.streams.clear()

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict]:
        def wait() -> bool:
            with self._request_seen:
                return self._request_seen.wait_for(lambda: len(self.requests) >= count, timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake OpenAI server saw {len(self.requests)} of {count} requests")
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
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/stats", self.get_stats)
        return app

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._request_seen:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            self._request_seen.notify_all()
        reply = self.replies.popleft() if self.replies else self.default
        if reply.status != 200:
            error = {"message": "fake failure", "type": reply.error_type, "param": None, "code": None}
            return web.json_response({"error": error}, status=reply.status)
        if not body.get("stream"):
            return web.json_response(self.completion_json(body, reply))
        return await self.stream(request, body, reply)

    def completion_json(self, body: dict, reply: FakeReply) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.tokens)}
        if reply.tools:
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": json.dumps(tool.get("input", {}))},
                }
                for tool in reply.tools
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tools else reply.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(reply.tokens), "total_tokens": 10},
        }

    def chunk(self, head: dict, delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**head, "choices": [choice]})

    async def stream(self, request: web.Request, body: dict, reply: FakeReply) -> web.StreamResponse:
        record = StreamRecord(request=body)
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        ttft = self.ttft if reply.ttft is None else reply.ttft
        interval = self.interval if reply.interval is None else reply.interval
        head = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "system_fingerprint": None,
        }
        try:
            await response.prepare(request)
            await response.write(self.chunk(head, {"role": "assistant", "content": ""}))
            if ttft:
                await asyncio.sleep(ttft)
            for n, token in enumerate(reply.tokens):
                if n == reply.cut_after:
                    if request.transport:
                        request.transport.abort()
                    return response
                if n == reply.error_event_after:
                    error = {"message": "The server is overloaded.", "type": "server_error", "code": None}
                    await response.write(sse({"error": error}))
                    return response
                if n == reply.hold_after:
                    await asyncio.Event().wait()  # until the client hangs up
                if n and interval:
                    await asyncio.sleep(interval)
                await response.write(self.chunk(head, {"content": token}))
                record.tokens_sent += 1
            if reply.hold_after is not None and reply.hold_after >= len(reply.tokens):
                await asyncio.Event().wait()
            for index, tool in enumerate(reply.tools):
                await self.write_tool_call(response, head, index, tool)
            finish = "tool_calls" if reply.tools else reply.finish_reason
            await response.write(self.chunk(head, {}, finish))
            await response.write(sse("[DONE]"))
            # Everything was sent: a client closing right after the last event is not an early close.
            record.completed = True
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionError):
            record.closed_early = not record.completed
            raise
        finally:
            record.ended.set()

    async def write_tool_call(self, response: web.StreamResponse, head: dict, index: int, tool: dict) -> None:
        """As OpenAI streams it: id and name first, then the arguments JSON in fragments."""
        call = {
            "index": index,
            "id": f"call_{next(self._ids)}",
            "type": "function",
            "function": {"name": tool["name"], "arguments": ""},
        }
        await response.write(self.chunk(head, {"tool_calls": [call]}))
        arguments = json.dumps(tool.get("input", {}))
        for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
            fragment = {
                "index": index,
                "function": {"arguments": arguments[start : start + ARGUMENT_FRAGMENT]},
            }
            await response.write(self.chunk(head, {"tool_calls": [fragment]}))

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

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.url}/v1"

    def start(self) -> FakeOpenAI:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake OpenAI server did not start")
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
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=25.0, help="tokens per second (0: as fast as possible)")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply")
    args = parser.parse_args()
    words = [f" word{n}" for n in range(args.tokens)]
    interval = 1 / args.rate if args.rate else 0.0
    fake = FakeOpenAI(ttft=args.ttft, interval=interval, default=FakeReply(tokens=words))
    # Benchmarks make thousands of requests: keep only counts, not bodies.
    fake.requests = _CountingList()
    fake.headers = _CountingList()

    async def run() -> None:
        url = await fake.serve(args.host, args.port)
        print(f"{url}/v1", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


class _CountingList(list):
    def append(self, item: object) -> None:
        self.count_ = getattr(self, "count_", 0) + 1

    def __len__(self) -> int:
        return getattr(self, "count_", 0)


if __name__ == "__main__":
    main()
