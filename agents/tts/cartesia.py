"""Cartesia's text-to-speech websocket (Sonic).

Wire protocol (JSON text frames), one connection multiplexing "contexts":
    connect  wss://api.cartesia.ai/tts/websocket
             with `X-API-Key: <key>` and `Cartesia-Version: 2025-04-16`
    client   {"model_id": "sonic-2", "transcript": "...", "voice": {"mode": "id", "id": <voice>},
              "language": "en", "context_id": <ours>, "continue": false,
              "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}}
             {"context_id": <ours>, "cancel": true}                      barge-in
    server   {"type": "chunk", "data": <b64 PCM s16le>, "done": false, "context_id": ...}
             {"type": "done", "done": true, "context_id": ...}
             {"type": "error", "done": true, "error" | "message": ..., "status_code": 4xx, "context_id": ...}
             ("timestamps", "flush_done", ... are ignored)

Each text gets a fresh context id and `continue: false`, so `done` marks the end of exactly that
text. Everything is tagged with its context, so a cancelled text's late chunks are simply dropped:
a barge-in needs no reconnect here.
"""

from __future__ import annotations

import uuid
from typing import Any

from agents.tts.base import TtsError
from agents.tts.streaming import DONE, Job, WebSocketTts, websocket_base

DEFAULT_URL = "wss://api.cartesia.ai"
PATH = "/tts/websocket"
API_VERSION = "2025-04-16"
DEFAULT_MODEL = "sonic-2"
DEFAULT_VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"  # a stock English voice from Cartesia's docs


class CartesiaTts(WebSocketTts):
    name = "Cartesia TTS"
    sample_rate = 24000

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "",
        voice: str = "",
        base_url: str = "",
        language: str = "en",
        **timeouts: float,
    ) -> None:
        super().__init__(**timeouts)
        self.api_key = api_key
        self.model = model or DEFAULT_MODEL
        self.voice = voice or DEFAULT_VOICE
        self.language = language
        self.base_url = websocket_base(base_url, DEFAULT_URL, PATH)

    def url(self) -> str:
        return f"{self.base_url}{PATH}"

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key, "Cartesia-Version": API_VERSION}

    def text_messages(self, job: Job) -> list[dict[str, Any]]:
        job.id = uuid.uuid4().hex
        return [
            {
                "model_id": self.model,
                "transcript": job.text,
                "voice": {"mode": "id", "id": self.voice},
                "language": self.language,
                "context_id": job.id,
                "output_format": {
                    "container": "raw",
                    "encoding": "pcm_s16le",
                    "sample_rate": self.sample_rate,
                },
                "continue": False,
            }
        ]

    async def cancel_on_wire(self, job: Job | None) -> None:
        if job is not None:
            await self.send({"context_id": job.id, "cancel": True})

    def route(self, message: dict[str, Any]) -> None:
        job = self._job
        context = message.get("context_id")
        kind = message.get("type")
        if kind == "error" and not context:
            self.fail(_error_message(message))  # about the connection, not one text
            return
        if job is None or context != job.id:
            return  # a cancelled or finished context's late messages
        if kind == "chunk":
            self.deliver_base64(message.get("data"), "audio chunk")
        elif kind == "error":
            # One context failed; the connection itself is fine for the next text.
            self.deliver(TtsError(f"{self.name}: {_error_message(message)}"))
        elif kind == "done" or message.get("done") is True:
            self.deliver(DONE)


def _error_message(message: dict[str, Any]) -> str:
    text = message.get("error") or message.get("message") or message.get("title") or "failed"
    status = message.get("status_code")
    return f"{text} ({status})" if status else str(text)
