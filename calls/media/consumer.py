"""The Media Streams websocket: translates Twilio's events into calls on the call's MediaCall
(and through it the conversation engine), and sends what it hands back. Nothing else lives here."""

from __future__ import annotations

import logging

from calls.media.wire import Connected, Dtmf, Mark, Media, Start, Stop, parse_event
from calls.socket import TwilioSocketConsumer

logger = logging.getLogger(__name__)


class MediaStreamConsumer(TwilioSocketConsumer):
    label = "media"
    binding_frame = Start
    binding_kind = "start"

    def opened(self) -> None:
        # Imported with the first media call: numpy, soxr and onnxruntime cost a process 35 MB
        # (and 140 ms to load), which a server that only runs ConversationRelay never needs.
        from calls.media.session import MediaCall

        self.call = MediaCall(self._send_text, self.hang_up)

    def is_bound(self) -> bool:
        return bool(self.call.stream_sid)

    def parse(self, raw: str | bytes | None) -> object:
        return parse_event(raw)

    async def dispatch_frame(self, event: object) -> None:
        call = self.call
        match event:
            case Media(payload=payload):
                await call.audio(payload)
            case Mark(name=name):
                call.mark(name)
            case Start():
                if not await call.start(event):
                    await self.hang_up(code=1008)  # policy: not a call we put through
            case Dtmf(digit=digit):
                await call.dtmf(digit)
            case Stop():
                await call.close()
            case Connected():
                pass

    async def disconnect(self, code: int) -> None:
        call = getattr(self, "call", None)
        if call is not None:
            await call.close()

    async def _send_text(self, text: str) -> None:
        # Straight to the ASGI server: the agent's audio comes through here.
        if self.gone:
            return
        try:
            # No "bytes" key: ASGI lets it be left out, channels' test client wants it so; asgiref's type not.
            await self.base_send({"type": "websocket.send", "text": text})  # type: ignore[arg-type]
        except Exception as exc:  # the caller hung up under a send (uvicorn: ClientDisconnected)
            self.gone = True
            logger.info("media socket gone while sending: %r", exc)
