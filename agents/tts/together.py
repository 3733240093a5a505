"""Together AI's realtime text-to-speech websocket (Kokoro by default).

Wire protocol (JSON text frames):
    connect  wss://api.together.ai/v1/audio/speech/websocket
             ?model=hexgrad/Kokoro-82M&voice=af_heart&response_format=pcm&sample_rate=24000
             with `Authorization: Bearer <key>`
    server   {"type": "session.created", "session": {"id", "model", "voice", ...}}  (first)
    client   {"type": "input_text_buffer.append", "text": "..."}
             {"type": "input_text_buffer.commit"}        synthesise what was appended
             {"type": "input_text_buffer.clear"}         barge-in: drop buffered text
    server   {"type": "conversation.item.input_text.received", "text": ...}
             {"type": "conversation.item.audio_output.delta", "item_id": "tts_1", "delta": <b64 PCM s16le>}
             {"type": "conversation.item.audio_output.done", "item_id": "tts_1"}
             {"type": "conversation.item.tts.failed" | "error", "error": {"message": ...}}

Two gaps in the protocol shape this client:
- `clear` drops buffered text "except text already being processed by the model": the audio of
  the sentence being spoken keeps coming. So after a barge-in that cut a synthesis short, the
  connection is dropped (its late audio goes nowhere) and a new one is opened in the background,
  ready before the next reply. Interrupting an idle connection only sends `clear`.
- The server splits text into items at sentence ends, with a `done` per item and no marker for
  the end of a commit. A text's audio is complete when `done` is followed by `done_grace` seconds
  of silence (the engine sends one sentence at a time, so this is normally one item); a `done`
  for an item that began in an earlier text never ends the current one.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection

from agents.tts.base import TtsError
from agents.tts.streaming import DONE, Job, WebSocketTts, websocket_base

DEFAULT_URL = "wss://api.together.ai"
PATH = "/v1/audio/speech/websocket"
DEFAULT_MODEL = "hexgrad/Kokoro-82M"
DEFAULT_VOICE = "af_heart"


class TogetherTts(WebSocketTts):
    name = "Together TTS"
    sample_rate = 24000
    done_grace = 0.5  # what Together's own voice-agent sample waits for more items

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "",
        voice: str = "",
        base_url: str = "",
        done_grace: float | None = None,
        **timeouts: float,
    ) -> None:
        super().__init__(**timeouts)
        self.api_key = api_key
        self.model = model or DEFAULT_MODEL
        self.voice = voice or DEFAULT_VOICE
        self.base_url = websocket_base(base_url, DEFAULT_URL, PATH)
        if done_grace is not None:
            self.done_grace = done_grace
        self.session: dict[str, Any] = {}  # as session.created described it
        self._dirty = False  # text was committed on this connection since it opened
        self._items: dict[str, Job] = {}  # item id -> the job whose audio it started in

    def url(self) -> str:
        query = urlencode(
            {
                "model": self.model,
                "voice": self.voice,
                "response_format": "pcm",
                "sample_rate": self.sample_rate,
            }
        )
        return f"{self.base_url}{PATH}?{query}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def handshake(self, ws: ClientConnection) -> None:
        # Nothing may be sent before the session exists; a bad voice or model fails right here.
        while True:
            message = _json(await ws.recv())
            kind = message.get("type")
            if kind == "session.created":
                self.session = message.get("session") or {}
                self._dirty = False
                self._items.clear()
                return
            if kind in ("error", "conversation.item.tts.failed"):
                raise TtsError(f"{self.name}: {_error_message(message)}")

    def text_messages(self, job: Job) -> list[dict[str, Any]]:
        self._dirty = True
        return [
            {"type": "input_text_buffer.append", "text": job.text},
            {"type": "input_text_buffer.commit"},
        ]

    async def cancel_on_wire(self, job: Job | None) -> None:
        try:
            await self.send({"type": "input_text_buffer.clear"})
        finally:
            if self._dirty:
                # Audio of the text being processed survives `clear`: let it die with this link.
                self._drop_connection(reconnect=True)

    def route(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        item_id = str(message.get("item_id") or "")
        if kind == "conversation.item.audio_output.delta":
            if item_id and item_id not in self._items and self._job is not None:
                self._items[item_id] = self._job
            self.deliver_base64(message.get("delta"), "audio delta")
        elif kind == "conversation.item.audio_output.done":
            owner = self._items.get(item_id)
            if owner is None or owner is self._job:
                self.deliver(DONE)
        elif kind in ("error", "conversation.item.tts.failed"):
            self.fail(_error_message(message))


def _json(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _error_message(message: dict[str, Any]) -> str:
    error = message.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "failed")
    return str(error or message.get("message") or "failed")
