"""Deepgram live streaming transcription.

Wire protocol (developers.deepgram.com, "Live audio"), the part we use:

- connect to `wss://api.deepgram.com/v1/listen?model=nova-3&language=en&encoding=linear16&
  sample_rate=16000&channels=1&interim_results=true&punctuate=true` with `Authorization: Token <key>`;
  the query string is the whole session configuration, and the socket accepts audio at once;
- we send raw PCM16 as binary frames, and JSON text frames `{"type": "Finalize"}` (transcribe what
  is buffered now: the end of a turn), `{"type": "KeepAlive"}` (after a few idle seconds; Deepgram
  closes a silent socket after about ten) and `{"type": "CloseStream"}` (on hang-up);
- it sends `{"type": "Results", "channel": {"alternatives": [{"transcript": ...}]}, "is_final",
  "speech_final", "from_finalize", "start", "duration"}`: an interim result (`is_final` false)
  is the current segment's guess, replaced by the next; a final one closes the segment.
  `from_finalize` marks the answer to our Finalize. Errors arrive as a close frame.

Deepgram has no "clear the buffer" message, so `clear` drops the turn locally and ignores results
that end before the clear (results carry their position in the stream in seconds).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from agents.stt.base import SAMPLE_RATE, WebSocketStt

BYTES_PER_SECOND = SAMPLE_RATE * 2


class DeepgramStt(WebSocketStt):
    name = "deepgram-stt"
    default_url = "wss://api.deepgram.com/v1/listen"
    default_model = "nova-3"
    keepalive_interval = 4.0
    _cleared_at = 0.0  # seconds into the stream at the last clear

    def url(self) -> str:
        query = {
            "model": self.model,
            "language": self.config.language or "en",
            "encoding": "linear16",
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "interim_results": "true",
            "punctuate": "true",
        }
        return f"{self.config.base_url or self.default_url}?{urlencode(query)}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.config.api_key}"}

    def audio_message(self, pcm: bytes) -> bytes:
        return pcm

    def commit_message(self) -> str:
        return '{"type": "Finalize"}'

    def keepalive_message(self) -> str:
        return '{"type": "KeepAlive"}'

    def close_message(self) -> str:
        return '{"type": "CloseStream"}'

    async def clear(self) -> None:
        self._cleared_at = self.bytes_sent / BYTES_PER_SECOND
        await super().clear()

    def handle(self, message: str | bytes) -> None:
        try:
            result = json.loads(message)
        except ValueError:
            return
        if not isinstance(result, dict) or result.get("type") != "Results":
            return  # Metadata, SpeechStarted, UtteranceEnd: nothing a turn needs
        end = float(result.get("start") or 0) + float(result.get("duration") or 0)
        if self._cleared_at and end <= self._cleared_at:
            return  # audio from before the clear
        alternatives = (result.get("channel") or {}).get("alternatives") or [{}]
        transcript = str(alternatives[0].get("transcript") or "")
        if not result.get("is_final"):
            self.partial(transcript)
            return
        # A final Deepgram chose on its own (a pause mid-turn) is recorded, but a waiting commit
        # waits for the answer to its Finalize: audio after that pause may still be in flight.
        self.final(transcript, answers_commit=bool(result.get("from_finalize")))
