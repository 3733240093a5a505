"""What the fake provider servers share: scripted replies, request and stream records, the aiohttp
app in a background thread, the streaming loop and the command line.

A subclass names its route and defines its wire format only: the error body, the non-streaming
JSON, and the SSE events before the first token, for each token, for an in-stream error and
after the last token.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from fakes.threaded import AiohttpServer


@dataclass
class FakeReply:
    """What a fake answers to one request (either provider's fake: each reads the fields it speaks)."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    ttft: float | None = None  # seconds before the first token; None: the server default
    interval: float | None = None  # seconds between tokens; None: the server default
    status: int = 200  # non-200: the provider's error body instead of a stream
    error_type: str | None = None  # the error body's `type`; None: the provider's generic server error
    cut_after: int | None = None  # drop the connection after this many tokens
    error_event_after: int | None = None  # send an in-stream error after this many tokens
    hold_after: int | None = None  # after this many tokens, wait (for the client to hang up)
    end_delay: float = 0.0  # seconds between the last event and the end of the body
    # {"name": ..., "input": {...}} or a list of them: tool calls after the text
    tool_use: dict | list[dict] | None = None
    stop_reason: str | None = None  # Anthropic's; None: "end_turn" (or "tool_use" with tools)
    finish_reason: str | None = None  # OpenAI's; None: "stop" (or "tool_calls" with tools)

    @property
    def tools(self) -> list[dict]:
        if self.tool_use is None:
            return []
        return [self.tool_use] if isinstance(self.tool_use, dict) else list(self.tool_use)


@dataclass
class StreamRecord:
    """One streamed response, as the fake saw it."""

    tokens_sent: int = 0
    completed: bool = False
    closed_early: bool = False
    ended: threading.Event = field(default_factory=threading.Event)
    held: bool = False  # paused by FakeReply.hold_after, waiting for the client to hang up

    async def wait_ended(self, timeout: float = 5.0) -> StreamRecord:
        if not await asyncio.to_thread(self.ended.wait, timeout):
            raise TimeoutError("the fake provider's stream did not end in time")
        return self


class FakeProviderServer(AiohttpServer):
    """Serve in a background thread with its own event loop; queue replies, read records."""

    name = "provider"  # in messages and the thread's name
    path = ""  # the route requests are POSTed to

    def __init__(self, *, ttft: float = 0.0, interval: float = 0.0, default: FakeReply | None = None):
        self.ttft = ttft
        self.interval = interval
        self.default = self._initial_default = default or FakeReply()
        self.replies: deque[FakeReply] = deque()
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        # The client's address of each request: the same one twice means a pooled connection.
        self.peers: list[tuple] = []
        self.streams: list[StreamRecord] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._request_seen = threading.Condition(self._lock)
        super().__init__()
        self.url = ""

    @property
    def base_url(self) -> str:
        """What the provider's SDK client takes as `base_url`."""
        return self.url

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
            self.headers.clear()
            self.peers.clear()
            self.streams.clear()
            self.default = default or self._initial_default

    async def _hold(self, record: StreamRecord) -> None:
        with self._request_seen:
            record.held = True
            self._request_seen.notify_all()
        await asyncio.Event().wait()  # until the client hangs up

    async def wait_held(self, index: int = 0, timeout: float = 5.0) -> StreamRecord:
        """Until stream `index` has sent its tokens up to `hold_after` and holds."""

        def wait() -> bool:
            with self._request_seen:
                return self._request_seen.wait_for(
                    lambda: len(self.streams) > index and self.streams[index].held, timeout
                )

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake {self.name} server's stream {index} did not hold")
        return self.streams[index]

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict]:
        def wait() -> bool:
            with self._request_seen:
                return self._request_seen.wait_for(lambda: len(self.requests) >= count, timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake {self.name} server saw {len(self.requests)} of {count} requests")
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

    # --- wire format: what a subclass defines -------------------------------------------
    def error_json(self, reply: FakeReply) -> dict:
        """The body of a non-200 answer."""
        raise NotImplementedError

    def reply_json(self, body: dict, reply: FakeReply) -> dict:
        """The whole reply, for a request without `stream: true`."""
        raise NotImplementedError

    def stream_head(self, body: dict) -> dict:
        """What every event of one stream repeats (ids, model); passed to the event methods."""
        return {}

    def opening_events(self, head: dict) -> Iterable[bytes]:
        """Written before the first token."""
        raise NotImplementedError

    def token_event(self, head: dict, token: str) -> bytes:
        raise NotImplementedError

    def error_event(self, head: dict) -> bytes:
        """An in-stream error (the provider is overloaded), after which the stream ends."""
        raise NotImplementedError

    def closing_events(self, head: dict, reply: FakeReply, tokens_sent: int) -> Iterable[bytes]:
        """Written after the last token: tool calls, the stop reason, the end of the stream."""
        raise NotImplementedError

    # --- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.path, self.respond)
        app.router.add_get("/stats", self.get_stats)
        return app

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def respond(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._request_seen:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            self.peers.append(request.transport.get_extra_info("peername") if request.transport else ())
            self._request_seen.notify_all()
        reply = self.replies.popleft() if self.replies else self.default
        if reply.status != 200:
            return web.json_response(self.error_json(reply), status=reply.status)
        if not body.get("stream"):
            # The model's time to answer: a whole message arrives after it, as the first token would.
            await asyncio.sleep(reply.ttft if reply.ttft is not None else self.ttft)
            return web.json_response(self.reply_json(body, reply))
        return await self.stream(request, body, reply)

    async def stream(self, request: web.Request, body: dict, reply: FakeReply) -> web.StreamResponse:
        record = StreamRecord()
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        ttft = self.ttft if reply.ttft is None else reply.ttft
        interval = self.interval if reply.interval is None else reply.interval
        head = self.stream_head(body)
        try:
            await response.prepare(request)
            for event in self.opening_events(head):
                await response.write(event)
            if ttft:
                await asyncio.sleep(ttft)
            for n, token in enumerate(reply.tokens):
                if n == reply.cut_after:
                    if request.transport:
                        request.transport.abort()
                    return response
                if n == reply.error_event_after:
                    await response.write(self.error_event(head))
                    return response
                if n == reply.hold_after:
                    await self._hold(record)
                if n and interval:
                    await asyncio.sleep(interval)
                await response.write(self.token_event(head, token))
                record.tokens_sent += 1
            if reply.hold_after is not None and reply.hold_after >= len(reply.tokens):
                await self._hold(record)
            for event in self.closing_events(head, reply, record.tokens_sent):
                await response.write(event)
            # Everything was sent: a client closing right after the last event is not an early close.
            record.completed = True
            if reply.end_delay:
                await asyncio.sleep(reply.end_delay)
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionError):
            record.closed_early = not record.completed
            raise
        finally:
            record.ended.set()


# --- command line -----------------------------------------------------------------------
def run_cli(server: type[FakeProviderServer], description: str, *, port: int) -> None:
    """Serve `server` in the foreground for a benchmark; print the SDK's base URL once it is up."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=25.0, help="tokens per second (0: as fast as possible)")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply")
    parser.add_argument(
        "--tagged", action="store_true", help='tokens name their request: " r17w0", " r17w1", ...'
    )
    args = parser.parse_args()
    words = [f" word{n}" for n in range(args.tokens)]
    interval = 1 / args.rate if args.rate else 0.0
    fake = server(ttft=args.ttft, interval=interval, default=FakeReply(tokens=words))
    # Benchmarks make thousands of requests: keep only counts, not bodies.
    fake.requests = _CountingList()
    fake.headers = _CountingList()
    fake.peers = _CountingList()
    if args.tagged:
        fake.replies = _TaggedReplies(args.tokens)
    fake.serve_in_foreground(args.host, args.port)


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
