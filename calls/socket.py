"""What both Twilio websockets (ConversationRelay, Media Streams) share: a handshake refused
unless Twilio signed it, one await per frame, no channel layer, and a hang-up that leaves the
shared database connection alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from calls.webhooks.signatures import handshake_signature_is_valid


class TwilioSocketConsumer(AsyncWebsocketConsumer):
    # These sockets talk to Twilio only: no groups, so no channel-layer round trips per call.
    channel_layer_alias = "__none__"

    async def __call__(
        self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
    ) -> None:
        # With no channel layer the socket is the only source of messages. Channels' loop
        # (await_many_dispatch) waits on it through asyncio.wait and a new task per frame: three
        # turns of the event loop, each behind every other call's work, before a frame reaches
        # the engine. One await does it.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
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

    async def websocket_disconnect(self, message: dict) -> None:
        # Channels would then close "old" database connections on the database thread that every
        # call shares: with CONN_MAX_AGE=0, each hang-up dropped that thread's connection, and the
        # next call's write paid for a new one. Work there reconnects on its own when it must
        # (calls.store.db.reconnecting), and there are no groups to leave.
        await self.disconnect(message["code"])
        raise StopConsumer()
