"""What both Twilio websockets (ConversationRelay, Media Streams) share: a handshake refused
unless Twilio signed it, one await per frame, no channel layer, unusable frames counted and
dropped, and a hang-up that leaves the shared database connection alone. A consumer names how
its frames parse (`parse`), what each one does (`dispatch_frame`) and which one binds the call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, WebSocketDisconnectEvent
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from calls.frames import FrameError
from calls.webhooks.signatures import handshake_signature_is_valid
from voiceproject.log_throttle import LogThrottle, loop_throttle

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope  # the scope type of channels' stubs

logger = logging.getLogger(__name__)

# Bad frames logged at WARNING with their reason, per interval and across every socket of the
# process: a flood of them on many sockets goes on at DEBUG, summed up in one line per interval.
REFUSALS_LOGGED = 5
REFUSALS_INTERVAL_SECONDS = 60.0


def refusals(label: str) -> LogThrottle:
    """The process's throttle of refused-frame warnings for one kind of socket ("relay", "media")."""
    return loop_throttle(
        f"{label} refusals",
        lambda: LogThrottle(
            logger,
            summary=f"{label}: %s malformed frames ignored in the last %s s on %s sockets (%s logged)",
            burst=REFUSALS_LOGGED,
            interval=REFUSALS_INTERVAL_SECONDS,
        ),
    )


class TwilioSocketConsumer(AsyncWebsocketConsumer):
    # These sockets talk to Twilio only: no groups, so no channel-layer round trips per call.
    channel_layer_alias = "__none__"
    label = "twilio"  # in log lines: "relay frame ignored", "media frame ignored"
    binding_frame: type = type(None)  # the frame that binds the call: if it fails, the call cannot go on
    binding_kind = ""  # its name on the wire: one that cannot be parsed fails the call too
    refused = 0  # frames dropped as unusable on this socket
    gone = False  # the socket closed under us: nothing more is sent

    async def __call__(
        self, scope: _ChannelScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        # With no channel layer the socket is the only source of messages. Channels' loop
        # (await_many_dispatch) waits on it through asyncio.wait and a new task per frame: three
        # turns of the event loop, each behind every other call's work, before a frame reaches
        # the engine. One await does it.
        self.scope = scope
        # What channels itself sets when channel_layer_alias names no layer; its stubs want one.
        self.channel_layer = None  # type: ignore[assignment]
        self.base_send = send
        try:
            while True:
                # An ASGI event is a plain dict, as channels' dispatch takes it.
                await self.dispatch(cast("dict[str, Any]", await receive()))
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every frame: a hop to the single
        # database thread that would queue each frame behind other calls' writes. Frames here
        # never touch the ORM directly (the engine's CallRecorder writes off the token path and
        # reconnects on its own), so they go straight to their handler.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        if not handshake_signature_is_valid(self.scope):
            await self.close(code=4403)  # before accept(): the handshake is refused
            return
        self.opened()
        await self.accept()

    def opened(self) -> None:
        """The handshake was signed: set up what the call needs."""

    def is_bound(self) -> bool:
        """A call is bound to this socket (its binding frame was handled)."""
        return False

    def parse(self, raw: str | bytes | None) -> object:
        raise NotImplementedError

    async def dispatch_frame(self, frame: object) -> None:
        raise NotImplementedError

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = self.parse(text_data if text_data is not None else bytes_data)
        except FrameError as exc:
            # Dropped: answering with an error frame would itself be a protocol error.
            self.refused += 1
            refusals(self.label).warn(
                id(self), "%s frame ignored (%s so far on this socket): %s", self.label, self.refused, exc
            )
            if exc.kind and exc.kind == self.binding_kind and not self.is_bound():
                # A start we cannot read (a malformed CallSid, say) binds no call: close, and let
                # Twilio's <Connect action> apologise rather than hold a silent line.
                await self.hang_up(code=1008)
            return
        try:
            await self.dispatch_frame(frame)
        except Exception:
            # A failure handling one frame must not end the call, but a call we could not bind
            # cannot go on: closing lets Twilio's <Connect action> retry or apologise.
            logger.exception("%s frame %s failed", self.label, type(frame).__name__)
            if isinstance(frame, self.binding_frame):
                await self.hang_up(code=1011)

    async def hang_up(self, code: int | None = None) -> None:
        """Close the socket, unless the caller already did (then there is nobody to tell)."""
        if self.gone:
            return
        try:
            await self.close(code=code)
        except Exception as exc:
            self.gone = True
            logger.info("%s socket gone before our close: %r", self.label, exc)

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        # Channels would then close "old" database connections on the database thread that every
        # call shares: with CONN_MAX_AGE=0, each hang-up dropped that thread's connection, and the
        # next call's write paid for a new one. Work there reconnects on its own when it must
        # (calls.store.db.reconnecting), and there are no groups to leave.
        await self.disconnect(message["code"])
        raise StopConsumer()
