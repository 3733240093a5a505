"""The ConversationRelay websocket: translates Twilio's frames into calls on the conversation
engine and the engine's output into frames. Nothing else lives here."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from calls.engine.conversation import Conversation
from calls.engine.events import CallStart
from calls.relay.wire import (
    Dtmf,
    FrameError,
    Info,
    Interrupt,
    Prompt,
    RelayError,
    end_frame,
    language_frame,
    parse_frame,
    text_frame,
)
from calls.webhooks.signatures import handshake_signature_is_valid

logger = logging.getLogger(__name__)


class RelayConsumer(AsyncWebsocketConsumer):
    # The relay socket talks to Twilio only: no groups, so no channel-layer round trips per call.
    channel_layer_alias = "__none__"

    async def __call__(
        self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
    ) -> None:
        # With no channel layer the socket is the only source of messages. Channels' loop
        # (await_many_dispatch) waits on it through asyncio.wait and a new task per frame: three
        # turns of the event loop, each behind every other call's work, before a prompt reaches
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
        # database thread that would queue each prompt behind other calls' writes. Frames here
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
        self.conversation = Conversation(self)
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_frame(text_data if text_data is not None else bytes_data)
        except FrameError as exc:
            # Logged and dropped; answering with an error frame would itself be a protocol error.
            logger.warning("relay frame ignored: %s", exc)
            return
        try:
            await self.dispatch_frame(frame)
        except Exception:
            # A failure handling one frame must not end the call, but a call we could not bind
            # (setup failed) cannot go on: closing lets Twilio's <Connect action> retry or apologise.
            logger.exception("relay frame %s failed", type(frame).__name__)
            if isinstance(frame, CallStart):
                await self.close(code=1011)

    async def dispatch_frame(self, frame: object) -> None:
        conversation = self.conversation
        match frame:
            case Prompt(text=text, last=True):
                await conversation.prompt(text)
            case Prompt():
                pass  # partial transcripts: the final one follows
            case Interrupt(utterance=utterance, duration_ms=duration_ms):
                await conversation.interrupt(utterance, duration_ms)
            case Dtmf(digit=digit):
                await conversation.dtmf(digit)
            case CallStart():
                await conversation.setup(frame)
            case RelayError(description=description):
                await conversation.relay_error(description)
            case Info():
                logger.debug("relay info %s", frame)

    async def websocket_disconnect(self, message: dict) -> None:
        # Channels would then close "old" database connections on the database thread that every
        # call shares: with CONN_MAX_AGE=0, each hang-up dropped that thread's connection, and the
        # next call's write paid for a new one. Work there reconnects on its own when it must
        # (calls.store.db.reconnecting), and there are no groups to leave.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        conversation = getattr(self, "conversation", None)
        if conversation is not None:
            await conversation.close()

    async def send_token(self, token: str, last: bool) -> None:
        # Straight to the ASGI server: every token of every call comes through here, and
        # AsyncWebsocketConsumer.send only wraps the same message in two more coroutines.
        await self.base_send({"type": "websocket.send", "text": text_frame(token, last)})

    async def send_language(self, code: str) -> None:
        await self.send(text_data=language_frame(code))

    async def send_end(self, handoff_data: str) -> None:
        await self.send(text_data=end_frame(handoff_data))
