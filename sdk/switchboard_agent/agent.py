"""The agent: one websocket to Switchboard, kept open, and your handlers run for its frames."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import os
import signal
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal, TypeVar, overload

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .backoff import Backoff
from .call import Call, Message, Turn
from .errors import AuthenticationError, HistoryError, NotConnectedError
from .reply import AbortReason, ReplyStream

logger = logging.getLogger("switchboard_agent")

PROTOCOL_VERSION = 1

TurnHandler = Callable[[Turn, Call], Awaitable[None]]
"""`turn.end` and `turn.continued`: `async def handler(turn, call)`."""
InterruptedHandler = Callable[[Turn, Call, str], Awaitable[None]]
"""`bot.interrupted`: `async def handler(turn, call, heard)`."""
CallEndedHandler = Callable[[Call], Awaitable[None]]
"""`call.ended`: `async def handler(call)`."""
Event = Literal["turn.end", "turn.continued", "bot.interrupted", "call.ended"]
EVENTS: tuple[Event, ...] = ("turn.end", "turn.continued", "bot.interrupted", "call.ended")

_TH = TypeVar("_TH", bound=TurnHandler)
_IH = TypeVar("_IH", bound=InterruptedHandler)
_CH = TypeVar("_CH", bound=CallEndedHandler)
_H = TypeVar("_H", bound=Callable[..., Awaitable[None]])

# A bot.interrupted can arrive long after reply.end (the caller talks over speech that is still
# playing), so a call keeps its last few turns' streams; calls are forgotten on call.ended, or
# oldest first past _MAX_CALLS (a call that ended while the agent was disconnected never says so).
_TURNS_KEPT_PER_CALL = 8
_MAX_CALLS = 10_000
_REFUSED = (401, 403)


class Agent:
    """A Switchboard agent process: receives the finished caller turns of its calls and streams
    a reply to each.

    ```python
    agent = Agent()  # SWITCHBOARD_AGENT_URL and SWITCHBOARD_API_KEY from the environment

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        async with call.reply_stream(turn) as stream:
            await stream.write("Hello!")

    agent.run_forever()
    ```

    Every handler runs as its own task, so a slow one never holds the socket. The connection is
    reopened after any loss, with exponential backoff and jitter (`backoff`); only a refused key
    stops `run()` (AuthenticationError).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        backoff: Backoff | None = None,
        history_timeout: float = 5.0,
        open_timeout: float = 10.0,
        close_grace: float = 5.0,
    ) -> None:
        url = url or os.environ.get("SWITCHBOARD_AGENT_URL", "")
        api_key = api_key or os.environ.get("SWITCHBOARD_API_KEY", "")
        if not url:
            raise ValueError("Agent needs url= or SWITCHBOARD_AGENT_URL (wss://<host>/ws/agent/)")
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"Agent url must start with wss:// (or ws://), not {url!r}")
        if not api_key:
            raise ValueError("Agent needs api_key= or SWITCHBOARD_API_KEY (created in the admin)")
        self.url = url
        self._api_key = api_key
        self.backoff = backoff or Backoff()
        self.history_timeout = history_timeout
        self.open_timeout = open_timeout
        self.close_grace = close_grace
        self.agent_id: str | None = None
        """The server's id for this connection (from its hello frame)."""
        self.key_name: str | None = None
        """The name the API key was given in the admin (from the hello frame)."""
        self.malformed_frames = 0
        """Frames from the server that could not be read (dropped and logged)."""
        self._handlers: dict[str, Callable[..., Awaitable[None]]] = {}
        self._calls: OrderedDict[str, Call] = OrderedDict()
        self._turn_ids: dict[str, deque[str]] = {}
        self._streams: dict[str, ReplyStream] = {}
        self._pending: dict[str, tuple[ClientConnection, asyncio.Future[list[Message]]]] = {}
        self._request_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ws: ClientConnection | None = None
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._close_task: asyncio.Task[None] | None = None

    # -- handlers ---------------------------------------------------------------------------

    @overload
    def on(self, event: Literal["turn.end", "turn.continued"]) -> Callable[[_TH], _TH]: ...
    @overload
    def on(self, event: Literal["bot.interrupted"]) -> Callable[[_IH], _IH]: ...
    @overload
    def on(self, event: Literal["call.ended"]) -> Callable[[_CH], _CH]: ...

    def on(self, event: Event) -> Callable[[_H], _H]:
        """Register the coroutine function below as the handler of `event` (one per event).

        - `turn.end`: `(turn, call)` — reply with `call.reply_stream(turn)`. The SDK ends the
          reply when the handler returns or raises, if it has not ended it itself.
        - `turn.continued`: `(turn, call)` — the caller kept talking; the reply is void and a
          new `turn.end` follows.
        - `bot.interrupted`: `(turn, call, heard)` — the caller talked over the reply.
        - `call.ended`: `(call,)` — the call is over.

        The reply stream is already aborted when the last three run; they are for bookkeeping.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        if event in self._handlers:
            raise ValueError(f"a handler for {event!r} is already registered")

        def register(handler: _H) -> _H:
            is_async = inspect.iscoroutinefunction(handler)  # a variable: keeps `handler` un-narrowed
            if not is_async:
                raise TypeError(f"the {event!r} handler must be an async function")
            self._handlers[event] = handler
            return handler

        return register

    # -- running ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the websocket is open and the server has said hello."""
        return self._ws is not None and self.agent_id is not None

    async def run(self) -> None:
        """Connect and serve until `close()`, reconnecting after every loss.

        Raises AuthenticationError when the server refuses the key.
        """
        if "turn.end" not in self._handlers:
            raise RuntimeError('register a "turn.end" handler before running the agent')
        if self._running:
            raise RuntimeError("this Agent is already running")
        self._running = True
        self._closing.clear()
        self._stopped.clear()
        failures = 0
        try:
            while not self._closing.is_set():
                try:
                    async with connect(
                        self.url,
                        additional_headers={"Authorization": f"Bearer {self._api_key}"},
                        open_timeout=self.open_timeout,
                    ) as ws:
                        self._ws = ws
                        if self._closing.is_set():  # close() came during the handshake
                            break
                        logger.info("connected to %s", self.url)
                        async for message in ws:
                            if self._on_frame(ws, message):
                                failures = 0  # the server said hello: this was a real session
                except InvalidStatus as error:
                    status = error.response.status_code
                    if status in _REFUSED:
                        raise AuthenticationError(status, self.url) from None
                    logger.warning("server answered HTTP %s at the handshake", status)
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as error:
                    if not self._closing.is_set():
                        logger.warning("connection lost or refused: %s", error or type(error).__name__)
                finally:
                    self._disconnected("closed" if self._closing.is_set() else "disconnected")
                if self._closing.is_set():
                    break
                delay = self.backoff.delay(failures)
                failures += 1
                logger.warning("reconnecting in %.2fs (attempt %d)", delay, failures)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
        finally:
            await self._finish_tasks()
            self._running = False
            self._stopped.set()
            logger.info("agent stopped")

    def run_forever(self) -> None:
        """Run the agent in a new event loop until SIGINT or SIGTERM, then close it cleanly."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._request_close)
            await self.run()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    async def close(self) -> None:
        """Stop: close the socket (open replies become aborted), give running handlers
        `close_grace` seconds to finish, cancel the rest, and return once `run()` has."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        current = asyncio.current_task()
        # A handler that closes the agent must not wait for itself.
        if self._running and current not in self._tasks:
            await self._stopped.wait()

    def _request_close(self) -> None:
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self.close())

    # -- frames from the server -------------------------------------------------------------

    def _on_frame(self, ws: ClientConnection, message: str | bytes) -> bool:
        """Dispatch one frame without awaiting (the reader never waits on a handler); True for
        the server's hello."""
        frame = _parse(message)
        if frame is None:
            self.malformed_frames += 1
            logger.warning("dropped a malformed frame: %.200r", message)
            return False
        kind = frame["type"]
        logger.debug("frame %s", kind)
        try:
            if kind == "hello":
                self._on_hello(frame)
                return True
            if kind == "turn.end":
                self._on_turn_end(ws, frame)
            elif kind in ("turn.continued", "bot.interrupted"):
                self._on_void(frame)
            elif kind == "call.ended":
                self._on_call_ended(frame)
            elif kind in ("history", "error"):
                self._on_answer(frame)
            else:
                logger.debug("ignored a frame of unknown type %r", kind)  # a newer server's
        except (KeyError, TypeError, ValueError) as error:
            self.malformed_frames += 1
            logger.warning("dropped a malformed %s frame (%s): %.200r", kind, error, message)
        return False

    def _on_hello(self, frame: dict[str, Any]) -> None:
        self.agent_id = frame.get("agent_id")
        self.key_name = frame.get("key_name")
        if frame.get("protocol") != PROTOCOL_VERSION:
            logger.warning(
                "server speaks protocol %r; this SDK speaks %d", frame.get("protocol"), PROTOCOL_VERSION
            )
        logger.info("serving as %s (key %s)", self.agent_id, self.key_name)

    def _on_turn_end(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        info = frame["call"]
        if not isinstance(info, dict):
            raise TypeError("call is not an object")
        call_sid = _text(info, "call_sid")
        turn = Turn(
            id=_text(frame, "turn_id"),
            call_sid=call_sid,
            text=_text(frame, "text"),
            history=Message.parse_history(frame.get("history", [])),
        )
        if turn.id in self._streams:  # one reply per turn, even if the frame came twice
            logger.warning("dropped a second turn.end for turn %s", turn.id)
            return
        call = self._call(call_sid)
        call.persona = str(info.get("persona") or call.persona)
        call.from_number = str(info.get("from") or call.from_number)
        call.to_number = str(info.get("to") or call.to_number)
        call.language = str(info.get("language") or call.language)
        # Bound to the socket the turn came on: after a reconnect its writes cannot leak onto the
        # new connection (the server ended the reply when the old one dropped).
        stream = ReplyStream(turn, lambda payload: self._send(ws, payload))
        self._streams[turn.id] = stream
        kept = self._turn_ids.setdefault(call_sid, deque())
        kept.append(turn.id)
        while len(kept) > _TURNS_KEPT_PER_CALL:
            self._streams.pop(kept.popleft(), None)
        self._spawn(self._run_turn(turn, call, stream), f"turn.end {turn.id}")

    def _on_void(self, frame: dict[str, Any]) -> None:
        kind: AbortReason = frame["type"]
        stream = self._streams.get(_text(frame, "turn_id"))
        if stream is None:
            logger.debug("%s for a turn this agent does not know", kind)
            return
        heard = frame.get("heard") if kind == "bot.interrupted" else None
        stream._abort(kind, heard if isinstance(heard, str) else None)
        call = self._calls.get(stream.turn.call_sid)
        handler = self._handlers.get(kind)
        if handler is not None and call is not None:
            args = (
                (stream.turn, call, stream.heard or "") if kind == "bot.interrupted" else (stream.turn, call)
            )
            self._spawn(self._notify(kind, handler(*args)), kind)

    def _on_call_ended(self, frame: dict[str, Any]) -> None:
        call_sid = _text(frame, "call_sid")
        call = self._calls.pop(call_sid, None)
        for turn_id in self._turn_ids.pop(call_sid, ()):
            stream = self._streams.pop(turn_id, None)
            if stream is not None:
                stream._abort("call.ended")
        if call is None:
            logger.debug("call.ended for a call this agent does not know")
            return
        call.ended = True
        handler = self._handlers.get("call.ended")
        if handler is not None:
            self._spawn(self._notify("call.ended", handler(call)), "call.ended")

    def _on_answer(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("request_id")
        if request_id is None:  # an error about no request in particular
            logger.warning("server error: %s", frame.get("message"))
            return
        entry = self._pending.pop(str(request_id), None)
        if entry is None or entry[1].done():
            logger.debug("answer to a request no longer waited for: %s", request_id)
            return
        future = entry[1]
        if frame["type"] == "error":
            future.set_exception(HistoryError(str(frame.get("message") or "history request failed")))
        else:
            try:
                future.set_result(list(Message.parse_history(frame.get("history"))))
            except ValueError as error:
                future.set_exception(HistoryError(f"malformed history: {error}"))

    # -- what calls and streams need --------------------------------------------------------

    def stream_for(self, turn: Turn) -> ReplyStream:
        """The reply stream of `turn` (used by `Call.reply_stream`)."""
        stream = self._streams.get(turn.id)
        if stream is None:
            raise ValueError(f"turn {turn.id} is unknown or too old to reply to")
        return stream

    async def request_history(self, call_sid: str, timeout: float | None) -> Sequence[Message]:
        """Send history.get and wait for its answer (used by `Call.get_history`)."""
        ws = self._ws
        if ws is None:
            raise NotConnectedError("the agent is not connected")
        request_id = f"r{next(self._request_ids)}"
        future: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (ws, future)
        try:
            if not await self._send(
                ws, {"type": "history.get", "request_id": request_id, "call_sid": call_sid}
            ):
                raise NotConnectedError("the connection closed before the history request was sent")
            async with asyncio.timeout(self.history_timeout if timeout is None else timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, ws: ClientConnection, payload: dict[str, Any]) -> bool:
        """Send a frame on `ws`; False when that connection is gone (nothing to retry: the
        server ends a dropped agent's replies itself)."""
        try:
            await ws.send(json.dumps(payload, ensure_ascii=False))
        except ConnectionClosed:
            return False
        return True

    def _call(self, call_sid: str) -> Call:
        call = self._calls.get(call_sid)
        if call is None:
            call = self._calls[call_sid] = Call(call_sid=call_sid, _link=self)
            while len(self._calls) > _MAX_CALLS:
                oldest, _ = self._calls.popitem(last=False)
                for turn_id in self._turn_ids.pop(oldest, ()):
                    self._streams.pop(turn_id, None)
        self._calls.move_to_end(call_sid)
        return call

    # -- tasks ------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"switchboard_agent {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_turn(self, turn: Turn, call: Call, stream: ReplyStream) -> None:
        try:
            await self._handlers["turn.end"](turn, call)
        except Exception:
            logger.exception("the turn.end handler failed on turn %s of call %s", turn.id, call.call_sid)
        finally:
            await stream.end()

    async def _notify(self, event: str, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            logger.exception("the %s handler failed", event)

    def _disconnected(self, reason: AbortReason) -> None:
        """The socket is gone: every open reply is void, every waiting request fails."""
        if self._ws is not None:
            logger.info("disconnected from %s", self.url)
        self._ws = None
        self.agent_id = None
        for stream in self._streams.values():
            if not stream.ended:
                stream._abort(reason)
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(NotConnectedError("the connection closed before the server answered"))
        self._pending.clear()

    async def _finish_tasks(self) -> None:
        if not self._tasks:
            return
        tasks = set(self._tasks)
        _, late = await asyncio.wait(tasks, timeout=self.close_grace)
        for task in late:
            task.cancel()
        if late:
            logger.warning("cancelled %d handler(s) still running after %.1fs", len(late), self.close_grace)
            await asyncio.gather(*late, return_exceptions=True)


def _parse(message: str | bytes) -> dict[str, Any] | None:
    if not isinstance(message, str):
        return None
    try:
        frame = json.loads(message)
    except ValueError:
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return None
    return frame


def _text(frame: dict[str, Any], key: str) -> str:
    value = frame[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value
