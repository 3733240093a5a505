"""Fixtures for the Media Streams tests: the fake speech providers, a Media Streams persona, and
Twilio's side of a stream (MediaClient) opened through the signed voice webhook and socket."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from agents.models import Persona
from calls.models import Turn
from fakes.realtime_tts_server import TTS_TEST_KEY, FakeTogetherTts

CALL_SID = "CA" + "e" * 32  # Twilio-shaped: the webhook and the start event refuse anything else
STREAM_SID = "MZ" + "1" * 32
GREETING = "Hello, how can I help?"
SILENCE = b"\xff" * 160  # mu-law zero


@pytest.fixture
def fake_tts(fake_together: FakeTogetherTts) -> FakeTogetherTts:
    """The Media Streams persona's voice: the fake Together speech server."""
    return fake_together


@pytest.fixture
def media_persona(default_persona, fake_anthropic, fake_stt, fake_tts, settings) -> Persona:
    settings.TOGETHER_API_KEY = TTS_TEST_KEY
    default_persona.transport = Persona.Transport.MEDIA
    default_persona.welcome_greeting = GREETING
    default_persona.stt_base_url = fake_stt.url
    default_persona.stream_tts_base_url = fake_tts.base_url
    default_persona.idle_timeout_seconds = None
    default_persona.save()
    return default_persona


class MediaClient:
    """Twilio's side of a media stream, driven by the test."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.received: list[dict] = []
        self.audio = bytearray()
        self.spoken = 0  # phrases synthesised and played so far
        self.closed = False

    async def start(self, parameters: dict[str, str]) -> None:
        await self.ws.send_json_to({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.ws.send_json_to(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": STREAM_SID,
                "start": {
                    "streamSid": STREAM_SID,
                    "callSid": CALL_SID,
                    "accountSid": "AC" + "0" * 32,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    async def say(self, audio: bytes, *, silence_ms: int = 0) -> None:
        audio = audio + SILENCE * (silence_ms // 20)
        for n, at in enumerate(range(0, len(audio), 160)):
            payload = base64.b64encode(audio[at : at + 160]).decode()
            await self.ws.send_json_to(
                {
                    "event": "media",
                    "streamSid": STREAM_SID,
                    "media": {
                        "track": "inbound",
                        "chunk": str(n + 1),
                        "timestamp": str(n * 20),
                        "payload": payload,
                    },
                }
            )

    async def next_event(self, kind: str, timeout: float = 10) -> dict:
        """Frames up to the next one of `kind` (media frames on the way are kept)."""
        while True:
            frame = await self.ws.receive_json_from(timeout)
            self.received.append(frame)
            if frame["event"] == "media":
                self.audio += base64.b64decode(frame["media"]["payload"])
            if frame["event"] == kind:
                return frame

    async def play(self, fake_tts: FakeTogetherTts, text: str) -> None:
        """Echo marks, as Twilio does once their audio has played, until `text` has been spoken
        (its phrases synthesised since the last `play`)."""
        start, echoed = self.spoken, 0
        # One mark follows each phrase's audio: done when the text is all sent and each echoed.
        while "".join(fake_tts.texts[start:]) != text or echoed < len(fake_tts.texts) - start:
            await self.echo(await self.next_event("mark"))
            echoed += 1
        self.spoken = len(fake_tts.texts)

    async def hang_up(self) -> None:
        """The caller hangs up: `stop`, then the socket closes; the call's writes are then stored."""
        self.closed = True
        await self.ws.send_json_to({"event": "stop", "streamSid": STREAM_SID, "stop": {"callSid": CALL_SID}})
        await self.ws.disconnect()

    async def echo(self, mark: dict) -> None:
        await self.ws.send_json_to({"event": "mark", "streamSid": STREAM_SID, "mark": mark["mark"]})


@pytest.fixture
async def media(twilio_post, sign_handshake, media_persona) -> AsyncIterator[MediaClient]:
    """A call put through the signed voice webhook, then its signed media socket, started."""
    from voiceproject.asgi import application

    response = await sync_to_async(twilio_post, thread_sensitive=False)(
        "/twilio/voice/", {"CallSid": CALL_SID, "From": "+14155550198", "To": "+14155550100"}
    )
    twiml = response.content.decode()
    assert '<Stream url="wss://switchboard.example.com/ws/media/">' in twiml, twiml
    parameters = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)" />', twiml))
    signature = sign_handshake("wss://switchboard.example.com/ws/media/")
    communicator = WebsocketCommunicator(
        application, "/ws/media/", headers=[(b"x-twilio-signature", signature.encode())]
    )
    connected, _ = await communicator.connect()
    assert connected
    client = MediaClient(communicator)
    await client.start(parameters)
    yield client
    if not client.closed:
        await communicator.disconnect()


async def turns() -> list[Turn]:
    """The call's stored turns, in order (read after `hang_up`, which waits for every write)."""
    return [t async for t in Turn.objects.filter(call__call_sid=CALL_SID).order_by("sequence")]
