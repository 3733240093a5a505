"""The Media Streams websocket: translates Twilio's events into calls on the call's MediaCall
(and through it the conversation engine), and sends what it hands back. Nothing else lives here."""

from __future__ import annotations

import logging

from calls.media.wire import Connected, Dtmf, FrameError, Mark, Media, Start, Stop, parse_event
from calls.socket import TwilioSocketConsumer

logger = logging.getLogger(__name__)


class MediaStreamConsumer(TwilioSocketConsumer):
    def opened(self) -> None:
        # Imported with the first media call: numpy, soxr and onnxruntime cost a process 35 MB
        # (and 140 ms to load), which a server that only runs ConversationRelay never needs.
        from calls.media.session import MediaCall

        self.call = MediaCall(self._send_text, self._hang_up)
        self.refused = 0  # frames dropped as unusable: counted, logged at debug past the first few
        self.gone = False  # the socket closed: nothing more is sent

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            event = parse_event(text_data if text_data is not None else bytes_data)
        except FrameError as exc:
            self.refused += 1
            # A flood of bad frames must not flood the log: the first few say why, then a count.
            level = logging.WARNING if self.refused <= 3 else logging.DEBUG
            logger.log(level, "media frame ignored (%s so far): %s", self.refused, exc)
            return
        try:
            await self.dispatch_event(event)
        except Exception:
            # One event failing must not end the call; a call we could not bind cannot go on.
            logger.exception("media event %s failed", type(event).__name__)
            if isinstance(event, Start):
                await self._hang_up(code=1011)

    async def dispatch_event(self, event: object) -> None:
        call = self.call
        match event:
            case Media(payload=payload):
                await call.audio(payload)
            case Mark(name=name):
                call.mark(name)
            case Start():
                if not await call.start(event):
                    await self._hang_up(code=1008)  # policy: not a call we put through
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
            await self.base_send({"type": "websocket.send", "text": text})
        except Exception as exc:  # the caller hung up under a send (uvicorn: ClientDisconnected)
            self.gone = True
            logger.info("media socket gone while sending: %r", exc)

    async def _hang_up(self, code: int | None = None) -> None:
        if self.gone:
            return
        try:
            await self.close(code=code)
        except Exception as exc:  # the caller went first
            self.gone = True
            logger.info("media socket gone before our close: %r", exc)
