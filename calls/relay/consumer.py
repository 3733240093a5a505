"""The ConversationRelay websocket: translates Twilio's frames into calls on the conversation
engine and the engine's output into frames. Nothing else lives here."""

from __future__ import annotations

import logging

from calls.engine.conversation import Conversation
from calls.engine.events import CallStart
from calls.relay.wire import (
    Dtmf,
    Info,
    Interrupt,
    Prompt,
    RelayError,
    end_frame,
    language_frame,
    parse_frame,
    text_frame,
)
from calls.socket import TwilioSocketConsumer

logger = logging.getLogger(__name__)


class RelayConsumer(TwilioSocketConsumer):
    label = "relay"
    binding_frame = CallStart
    binding_kind = "setup"
    chunks_phrases = False  # Twilio speaks what it is sent: the persona's chunking applies

    def opened(self) -> None:
        self.conversation = Conversation(self)

    def is_bound(self) -> bool:
        return self.conversation.bound

    def parse(self, raw: str | bytes | None) -> object:
        return parse_frame(raw)

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

    async def disconnect(self, code: int) -> None:
        conversation = getattr(self, "conversation", None)
        if conversation is not None:
            await conversation.close()

    async def send_token(self, token: str, last: bool) -> None:
        # Straight to the ASGI server: every token of every call comes through here, and
        # AsyncWebsocketConsumer.send only wraps the same message in two more coroutines.
        # No "bytes" key: ASGI lets it be left out, channels' test client wants it so; asgiref's type not.
        await self.base_send({"type": "websocket.send", "text": text_frame(token, last)})  # type: ignore[arg-type]

    async def send_language(self, code: str) -> None:
        await self.send(text_data=language_frame(code))

    async def send_end(self, handoff_data: str) -> None:
        await self.send(text_data=end_frame(handoff_data))
