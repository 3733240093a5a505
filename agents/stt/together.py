"""Together AI's realtime transcription (Whisper), an OpenAI-realtime-style websocket.

Wire protocol (docs.together.ai, "Streaming transcription"):

- connect to `wss://api.together.ai/v1/realtime?model=<model>&input_audio_format=pcm_s16le_16000`
  with `Authorization: Bearer <key>` and `OpenAI-Beta: realtime=v1`; the session is configured
  by those query parameters and is ready on `{"type": "session.created"}`;
- we send `{"type": "input_audio_buffer.append", "audio": <base64 PCM16 16 kHz>}`,
  `{"type": "input_audio_buffer.commit"}` (transcribe what is buffered now: the end of a turn) and
  `{"type": "input_audio_buffer.clear"}` (drop what is buffered);
- it sends `conversation.item.input_audio_transcription.delta` (`delta`: the current segment's
  text so far, each one replacing the last), `...completed` (`transcript`: the segment's final
  text), `...failed`, and `error` (`error.message`).

The server runs its own VAD and completes segments on pauses, so one caller turn can hold several
completed segments; we keep that on (it finishes most of the turn before our commit) and let our
own VAD decide when the turn ends. The endpoint documents no language parameter (Whisper detects
the language), so `SttConfig.language` is not sent.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection

from agents.stt.base import SttError, WebSocketStt

logger = logging.getLogger(__name__)

TRANSCRIPTION = "conversation.item.input_audio_transcription."


class TogetherStt(WebSocketStt):
    name = "together-stt"
    default_url = "wss://api.together.ai/v1/realtime"
    default_model = "openai/whisper-large-v3"
    keepalive_interval = None  # audio flows all call long; websockets' own pings keep NATs open

    def url(self) -> str:
        query = urlencode({"model": self.model, "input_audio_format": "pcm_s16le_16000"})
        return f"{self.config.base_url or self.default_url}?{query}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}", "OpenAI-Beta": "realtime=v1"}

    async def ready(self, ws: ClientConnection) -> None:
        # Audio sent before session.created is dropped by the server, so wait for it.
        async for raw in ws:
            event = _event(raw)
            if event.get("type") == "session.created":
                return
            if event.get("type") == "error":
                raise SttError(f"{self.name}: the session was refused: {_error_message(event)}")
        raise SttError(f"{self.name}: the connection closed before the session was created")

    def audio_message(self, pcm: bytes) -> str:
        audio = base64.b64encode(pcm).decode("ascii")
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def commit_message(self) -> str:
        return '{"type": "input_audio_buffer.commit"}'

    def clear_message(self) -> str:
        return '{"type": "input_audio_buffer.clear"}'

    def handle(self, message: str | bytes) -> None:
        event = _event(message)
        kind = event.get("type", "")
        if kind == TRANSCRIPTION + "delta":
            self.partial(str(event.get("delta") or ""))
        elif kind == TRANSCRIPTION + "completed":
            self.final(str(event.get("transcript") or ""))
        elif kind == TRANSCRIPTION + "failed":
            # Keep the last guess rather than nothing; the turn still ends.
            logger.warning("%s: transcription failed: %s", self.name, _error_message(event))
            self.final(self._partial)
        elif kind == "error":
            # Not fatal by itself (committing an empty buffer is one); a fatal one closes the
            # socket, which the reader turns into SttError. A waiting commit stops waiting.
            logger.warning("%s: %s", self.name, _error_message(event))
            self.finished()


def _event(raw: str | bytes) -> dict:
    try:
        event = json.loads(raw)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _error_message(event: dict) -> str:
    error = event.get("error")
    return str(error.get("message") if isinstance(error, dict) else error or "unknown error")
