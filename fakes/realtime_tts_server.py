"""Fake realtime text-to-speech servers on loopback, for tests and the embedded run: Together's
speech websocket and Cartesia's, speaking the real wire formats (see agents/tts/together.py and
agents/tts/cartesia.py), so the real clients are pointed at them and nothing in them is patched.

For each text a fake streams PCM16 mono of a length proportional to the text (`ms_per_char`), in
chunks of `chunk_ms`, `chunk_delay` seconds apart. The audio is tagged (`fake_pcm`) with its
synthesis' `Synthesis.value`, different for each, and numbered: a test tells whose audio it got and
whether it is whole and in order (`audio_tags`, `audio_positions`). Scripting: `hold_after(n)` pauses the next synthesis after n
chunks until `release()` (interrupt mid-synthesis without timing games); `fail_next(mode)` makes
it fail ("close": the socket closes; "drop": the TCP connection dies; "error": an error event).
Records: connections (headers, query), every message received, texts, syntheses, clears/cancels.

Run standalone for the embedded run or a benchmark (prints the base URL):
    python -m fakes.realtime_tts_server --vendor together --port 8790 --chunk-delay 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fakes.threaded import ThreadedServer


class Timeouts(TypedDict):
    """A realtime speech client's socket timeouts (agents/tts/streaming.py), in seconds."""

    open_timeout: float
    idle_timeout: float
    send_timeout: float


# The key the fakes want in tests, and short client waits: a fake answers in milliseconds, and a
# test of a failure must not take seconds.
TTS_TEST_KEY = "test-tts-key"
TEST_TIMEOUTS: Timeouts = {"open_timeout": 5.0, "idle_timeout": 3.0, "send_timeout": 2.0}

__all__ = [
    "TEST_TIMEOUTS",
    "TTS_TEST_KEY",
    "FakeCartesiaTts",
    "FakeTogetherTts",
    "Synthesis",
    "audio_positions",
    "audio_tags",
    "fake_pcm",
    "wav_header",
]


def fake_pcm(tag: int, samples: int, start: int = 0) -> bytes:
    """The fakes' audio: even samples carry the synthesis' tag, odd ones the sample pair's
    position in it, so a test can tell whose audio it got and whether any went missing."""
    pairs = range(start // 2, (start + samples + 1) // 2)
    pcm = b"".join(tag.to_bytes(2, "little", signed=True) + (n & 0xFFFF).to_bytes(2, "little") for n in pairs)
    return pcm[: samples * 2]


def audio_tags(pcm: bytes) -> set[int]:
    """The tags in audio that starts at a synthesis' first sample: {Synthesis.value} for one's."""
    return {int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, len(pcm) - 1, 4)}


def audio_positions(pcm: bytes) -> list[int]:
    """The positions in such audio: 0, 1, 2, ... (modulo 2**16) when it is whole and in order."""
    return [int.from_bytes(pcm[i : i + 2], "little") for i in range(2, len(pcm) - 1, 4)]


def wav_header(sample_rate: int) -> bytes:
    """A streaming WAV header (sizes unknown, so placeholders), as some TTS servers send first."""
    unknown = 0x7FFFF000
    fmt = (
        (1).to_bytes(2, "little")  # PCM
        + (1).to_bytes(2, "little")  # mono
        + sample_rate.to_bytes(4, "little")
        + (sample_rate * 2).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
    )
    return (
        b"RIFF"
        + (unknown + 36).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + fmt
        + b"data"
        + unknown.to_bytes(4, "little")
    )


@dataclass
class Connection:
    """One websocket the fake accepted."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    closed: threading.Event = field(default_factory=threading.Event)


@dataclass
class Synthesis:
    """One text the fake synthesised (or began to)."""

    text: str
    value: int  # the tag in its audio
    samples: int  # in full
    id: str = ""  # Together's item id, Cartesia's context id
    chunks_sent: int = 0
    bytes_sent: int = 0  # of PCM, WAV header excluded
    completed: bool = False  # its done event went out
    cancelled: bool = False  # cut short by a clear or cancel
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass
class Script:
    """What the fake does to the next synthesis."""

    hold_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set on the fake's loop
    fail: str | None = None  # "close" | "drop" | "error"
    fail_after: int = 0  # chunks sent first


class FakeTtsServer(ThreadedServer):
    """Serve in a background thread with its own event loop; script syntheses, read records."""

    name = "TTS"
    path = ""

    def __init__(
        self,
        *,
        ms_per_char: float = 60.0,
        chunk_ms: float = 100.0,
        chunk_delay: float = 0.0,
        sample_rate: int = 24000,
        api_key: str | None = None,
        wav_header: bool = False,
        odd_chunks: bool = False,
    ) -> None:
        self.ms_per_char = ms_per_char
        self.chunk_ms = chunk_ms
        self.chunk_delay = chunk_delay
        self.sample_rate = sample_rate
        self.api_key = api_key  # set: a handshake without it is refused with 401
        self.wav_header = wav_header  # each synthesis' audio starts with a WAV header
        self.odd_chunks = odd_chunks  # chunks of an odd number of bytes (samples split in two)
        self.connections: list[Connection] = []
        self.messages: list[dict[str, Any]] = []
        self.syntheses: list[Synthesis] = []
        self.rejected = 0  # handshakes refused for a wrong key
        self.cancels = 0  # Together's clears, Cartesia's cancels
        self._scripts: list[Script] = []
        self._holds: list[Script] = []  # scripted holds not released yet, in order
        self.holding = threading.Event()  # a synthesis is paused by hold_after
        self._numbers = itertools.count(1)
        self._changed = threading.Condition()
        super().__init__()
        self._open: set[ServerConnection] = set()
        self.base_url = ""

    @property
    def url(self) -> str:
        """The full endpoint URL."""
        return self.base_url + self.path

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.syntheses]

    def samples_for(self, text: str) -> int:
        return max(1, round(len(text) * self.ms_per_char / 1000 * self.sample_rate))

    # --- scripting and inspection -------------------------------------------------------
    def hold_after(self, chunks: int) -> None:
        """Pause the next synthesis after `chunks` chunks, until `release()`."""
        script = Script(hold_after=chunks)
        self._scripts.append(script)
        self._holds.append(script)

    def fail_next(self, mode: str, *, after_chunks: int = 0) -> None:
        assert mode in ("close", "drop", "error"), mode
        self._scripts.append(Script(fail=mode, fail_after=after_chunks))

    def release(self) -> None:
        """Let the oldest scripted hold go on, whether or not its synthesis has reached it yet."""
        if self._holds and self._loop:
            self._loop.call_soon_threadsafe(self._holds.pop(0).release.set)

    def drop_connections(self) -> None:
        """Close every open socket from the server side (a vendor's idle timeout)."""
        assert self._loop
        for ws in list(self._open):
            asyncio.run_coroutine_threadsafe(ws.close(1001, "idle"), self._loop)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(predicate, timeout)

        if not await asyncio.to_thread(wait):
            raise TimeoutError(f"the fake {self.name} server never got there")

    def _note(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- synthesis ----------------------------------------------------------------------
    def _new_synthesis(self, text: str, id: str = "") -> tuple[Synthesis, Script]:
        n = next(self._numbers)
        synthesis = Synthesis(text=text, value=(n % 300 + 1) * 100, samples=self.samples_for(text), id=id)
        self.syntheses.append(synthesis)
        self._note()
        return synthesis, (self._scripts.pop(0) if self._scripts else Script())

    def _chunks(self, synthesis: Synthesis) -> list[bytes]:
        pcm = fake_pcm(synthesis.value, synthesis.samples)
        size = max(2, round(self.chunk_ms / 1000 * self.sample_rate) * 2) + (1 if self.odd_chunks else 0)
        return [pcm[i : i + size] for i in range(0, len(pcm), size)]

    async def _stream(
        self,
        ws: ServerConnection,
        synthesis: Synthesis,
        script: Script,
        send_audio: Callable[[bytes], dict],
        done: Callable[[], dict],
        error: Callable[[], dict],
    ) -> None:
        """Send `synthesis` as audio events, obeying `script`; the caller cancels it on a clear."""
        try:
            for n, chunk in enumerate(self._chunks(synthesis)):
                if script.fail and n == script.fail_after:
                    await self._fail(ws, script.fail, error)
                    return
                if n == script.hold_after and not script.release.is_set():
                    self.holding.set()
                    self._note()
                    await script.release.wait()
                    self.holding.clear()
                if n and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                head = wav_header(self.sample_rate) if self.wav_header and n == 0 else b""
                await ws.send(json.dumps(send_audio(head + chunk)))
                synthesis.chunks_sent += 1
                synthesis.bytes_sent += len(chunk)
                self._note()
            if script.fail:
                await self._fail(ws, script.fail, error)
                return
            await ws.send(json.dumps(done()))
            synthesis.completed = True
        except asyncio.CancelledError:
            synthesis.cancelled = True
            raise
        except ConnectionClosed:
            pass
        finally:
            synthesis.ended.set()
            self._note()

    async def _fail(self, ws: ServerConnection, mode: str, error: Callable[[], dict]) -> None:
        if mode == "error":
            await ws.send(json.dumps(error()))
        elif mode == "close":
            await ws.close(1011, "fake failure")
        else:
            ws.transport.abort()

    # --- websocket ----------------------------------------------------------------------
    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != self.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        if self.api_key is not None and not self.authorized(request.headers):
            self.rejected += 1
            self._note()
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid api key\n")
        return None

    def authorized(self, headers: Headers) -> bool:
        raise NotImplementedError

    async def _handler(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path)  # type: ignore[union-attr]
        record = Connection(
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in ws.request.headers.raw_items()},  # type: ignore[union-attr]
        )
        self.connections.append(record)
        self._open.add(ws)
        self._note()
        try:
            await self.converse(ws, record)
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(ws)
            record.closed.set()
            self._note()

    async def converse(self, ws: ServerConnection, connection: Connection) -> None:
        raise NotImplementedError

    async def _received(self, raw: str | bytes) -> dict[str, Any]:
        message = json.loads(raw)
        self.messages.append(message)
        self._note()
        return message

    # --- lifecycle ----------------------------------------------------------------------
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await serve(self._handler, host, port, process_request=self._check, compression=None)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"ws://{host}:{port}"
        return self.base_url

    def before_stop(self) -> None:
        while self._holds:
            self.release()


class FakeTogetherTts(FakeTtsServer):
    """Together's /v1/audio/speech/websocket. Like the real one, `input_text_buffer.clear` drops
    buffered and queued text but not the text being processed: its audio keeps coming (set
    `clear_stops_audio` to cut it too). `session_error` fails the session at once (a bad voice)."""

    name = "Together"
    path = "/v1/audio/speech/websocket"

    def __init__(self, *, clear_stops_audio: bool = False, session_error: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.clear_stops_audio = clear_stops_audio
        self.session_error = session_error
        self._items = itertools.count(1)

    def authorized(self, headers: Headers) -> bool:
        return headers.get("Authorization") == f"Bearer {self.api_key}"

    async def converse(self, ws: ServerConnection, connection: Connection) -> None:
        if self.session_error:
            await ws.send(
                json.dumps({"type": "conversation.item.tts.failed", "error": {"message": self.session_error}})
            )
            await ws.close(1008, "session failed")
            return
        session = {
            "id": f"session-{len(self.connections)}",
            "object": "realtime.tts.session",
            "modalities": ["text", "audio"],
            "model": connection.query.get("model", ""),
            "voice": connection.query.get("voice", ""),
        }
        await ws.send(json.dumps({"event_id": "evt_1", "type": "session.created", "session": session}))
        buffer: list[str] = []
        queue: asyncio.Queue[str] = asyncio.Queue()
        speaking: list[asyncio.Task] = []
        worker = asyncio.create_task(self._speak_queue(ws, queue, speaking))
        try:
            async for raw in ws:
                message = await self._received(raw)
                kind = message.get("type")
                if kind == "input_text_buffer.append":
                    buffer.append(str(message.get("text", "")))
                elif kind == "input_text_buffer.commit":
                    text, buffer = "".join(buffer), []
                    if text.strip():
                        await ws.send(
                            json.dumps({"type": "conversation.item.input_text.received", "text": text})
                        )
                        queue.put_nowait(text)
                elif kind == "input_text_buffer.clear":
                    self.cancels += 1
                    buffer = []
                    while not queue.empty():
                        queue.get_nowait()
                    if self.clear_stops_audio and speaking:
                        speaking[0].cancel()
                    self._note()
        finally:
            for task in [worker, *speaking]:
                task.cancel()
            await asyncio.wait([worker, *speaking])

    async def _speak_queue(self, ws: ServerConnection, queue: asyncio.Queue[str], speaking: list) -> None:
        while True:
            text = await queue.get()
            item_id = f"tts_{next(self._items)}"
            synthesis, script = self._new_synthesis(text, item_id)
            task = asyncio.create_task(
                self._stream(
                    ws,
                    synthesis,
                    script,
                    send_audio=partial(_together_delta, item_id),
                    done=partial(_together_done, item_id),
                    error=lambda: {
                        "type": "conversation.item.tts.failed",
                        "error": {"message": "fake failure"},
                    },
                )
            )
            speaking[:] = [task]
            await asyncio.wait([task])  # a clear that cancels the task must not stop this loop
            speaking.clear()


class FakeCartesiaTts(FakeTtsServer):
    """Cartesia's /tts/websocket. A `cancel` stops its context, but `late_chunks` chunks already
    in flight still go out after it (what a client must drop); contexts run concurrently."""

    name = "Cartesia"
    path = "/tts/websocket"

    def __init__(self, *, late_chunks: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.late_chunks = late_chunks

    def authorized(self, headers: Headers) -> bool:
        return headers.get("X-API-Key") == self.api_key

    async def converse(self, ws: ServerConnection, connection: Connection) -> None:
        contexts: dict[str, tuple[asyncio.Task, Synthesis]] = {}
        try:
            async for raw in ws:
                message = await self._received(raw)
                context = str(message.get("context_id") or "")
                if message.get("cancel"):
                    self.cancels += 1
                    self._note()
                    if context in contexts:
                        task, synthesis = contexts.pop(context)
                        task.cancel()
                        for _ in range(self.late_chunks):
                            await ws.send(json.dumps(self._chunk(context, synthesis.value)))
                    continue
                if not context or not message.get("transcript"):
                    error = {"type": "error", "done": True, "error": "missing field", "status_code": 400}
                    await ws.send(json.dumps({**error, "context_id": context}))
                    continue
                synthesis, script = self._new_synthesis(str(message["transcript"]), context)
                task = asyncio.create_task(
                    self._stream(
                        ws,
                        synthesis,
                        script,
                        send_audio=partial(self._audio_chunk, context),
                        done=partial(_cartesia_done, context),
                        error=partial(_cartesia_error, context),
                    )
                )
                contexts[context] = (task, synthesis)
                task.add_done_callback(partial(_forget, contexts, context))
        finally:
            for task, _ in contexts.values():
                task.cancel()

    def _audio_chunk(self, context: str, pcm: bytes) -> dict[str, Any]:
        return self._chunk(context, pcm=pcm)

    def _chunk(self, context: str, value: int = 0, *, pcm: bytes | None = None) -> dict[str, Any]:
        if pcm is None:
            pcm = fake_pcm(value, 240)
        data = base64.b64encode(pcm).decode()
        return {
            "type": "chunk",
            "data": data,
            "done": False,
            "status_code": 206,
            "step_time": 1.0,
            "context_id": context,
        }


# The events of one synthesis, bound to its item or context (the loop that started it moves on).
def _together_delta(item_id: str, pcm: bytes) -> dict[str, Any]:
    return {
        "type": "conversation.item.audio_output.delta",
        "item_id": item_id,
        "delta": base64.b64encode(pcm).decode(),
    }


def _together_done(item_id: str) -> dict[str, Any]:
    return {"type": "conversation.item.audio_output.done", "item_id": item_id}


def _cartesia_done(context: str) -> dict[str, Any]:
    return {"type": "done", "done": True, "status_code": 206, "context_id": context}


def _cartesia_error(context: str) -> dict[str, Any]:
    return {"type": "error", "done": True, "error": "fake failure", "status_code": 500, "context_id": context}


def _forget(contexts: dict[str, Any], context: str, _task: asyncio.Task[None]) -> None:
    contexts.pop(context, None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vendor", choices=("together", "cartesia"), default="together")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--ms-per-char", type=float, default=60.0)
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between chunks")
    args = parser.parse_args()
    server = FakeTogetherTts if args.vendor == "together" else FakeCartesiaTts
    fake = server(ms_per_char=args.ms_per_char, chunk_ms=args.chunk_ms, chunk_delay=args.chunk_delay)
    fake.serve_in_foreground(args.host, args.port)


if __name__ == "__main__":
    main()
