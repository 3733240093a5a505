"""The Media Streams socket end to end: the real ASGI app and Postgres, real speech audio through
Silero VAD, and the real speech-to-text, model and text-to-speech clients talking to fake
provider servers on loopback. The test plays Twilio: it sends the caller's audio as 20 ms mu-law
frames and echoes marks when it decides the audio before them has played."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from agents.models import Persona
from calls.media.clips import clip
from calls.models import Call, Turn
from fakes.base import FakeReply
from fakes.realtime_stt_server import FakeRealtimeStt
from fakes.realtime_tts_server import FakeTogetherTts

pytestmark = [pytest.mark.django_db(transaction=True)]

CALL_SID = "CA" + "m" * 32
STREAM_SID = "MZ" + "1" * 32
GREETING = "Hello, how can I help?"
SILENCE = b"\xff" * 160  # mu-law zero
TTS_KEY = "test-tts-key"


@pytest.fixture
def fake_stt() -> Iterator[FakeRealtimeStt]:
    fake = FakeRealtimeStt().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_tts() -> Iterator[FakeTogetherTts]:
    fake = FakeTogetherTts(api_key=TTS_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def media_persona(default_persona, fake_anthropic, fake_stt, fake_tts, settings) -> Persona:
    settings.TOGETHER_API_KEY = TTS_KEY
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
    return [t async for t in Turn.objects.filter(call__call_sid=CALL_SID).order_by("sequence")]


async def test_a_spoken_turn_is_transcribed_answered_and_spoken_back(
    media, fake_stt, fake_tts, fake_anthropic
):
    fake_stt.reply_with("What are your hours?")
    fake_anthropic.queue(FakeReply(tokens=["We open", " at nine", " and close at five."]))

    await media.play(fake_tts, GREETING)  # synthesised in phrases, each sent with a mark
    await media.say(clip("hello"), silence_ms=800)

    await media.play(fake_tts, "We open at nine and close at five.")
    assert fake_stt.commits == 1 and len(fake_stt.audio) > 16000  # the clip's speech, at 16 kHz
    await media.hang_up()

    stored = await turns()
    assert [(t.role, t.text) for t in stored] == [
        ("assistant", GREETING),
        ("user", "What are your hours?"),
        ("assistant", "We open at nine and close at five."),
    ]
    assert not stored[2].interrupted
    frames = [f for f in media.received if f["event"] == "media"]
    assert frames and all(set(f) == {"event", "streamSid", "media"} for f in frames)
    assert all(len(base64.b64decode(f["media"]["payload"])) % 160 == 0 for f in frames)  # whole 20 ms frames


async def test_barge_in_clears_twilio_and_keeps_only_the_played_audio(
    media, fake_stt, fake_tts, fake_anthropic
):
    long_reply = [
        "We are open",
        " Monday to Friday,",
        " from eight in the morning",
        " until six at night,",
        " and on Saturdays until noon.",
    ]
    fake_stt.reply_with("When are you open?", "Wait, stop, I have a question.")
    fake_anthropic.queue(FakeReply(tokens=long_reply), FakeReply(tokens=["Of course, go ahead."]))
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)

    first = await media.next_event("mark")  # the first phrase of the reply is sent...
    await media.echo(first)  # ...and played; the rest is still queued at Twilio
    await media.next_event("mark")
    await media.say(clip("interrupt"))

    clear = await media.next_event("clear")
    assert clear == {"event": "clear", "streamSid": STREAM_SID}
    await media.hang_up()
    stored = await turns()
    reply = stored[2]
    played = fake_tts.texts[media.spoken]
    assert reply.interrupted and reply.text == played
    assert reply.generated_text == "".join(long_reply) and len(played) < len(reply.generated_text)
    assert reply.heard_confidence >= 0.9
    assert fake_tts.cancels >= 1  # the synthesis in progress was told to stop


async def test_bad_frames_are_dropped_and_counted_and_the_call_goes_on(
    media, fake_stt, fake_tts, fake_anthropic
):
    await media.play(fake_tts, GREETING)
    for bad in [
        "not json",
        "[1, 2]",
        '{"event": "media", "media": {"payload": "%%%"}}',
        '{"event": "dance"}',
        '{"event": "media", "media": {"payload": ""}}',
    ]:
        await media.ws.send_to(text_data=bad)
    await media.ws.send_to(bytes_data=b"\x00\x01")
    fake_stt.reply_with("Are you there?")
    fake_anthropic.queue(FakeReply(tokens=["Yes, I am here."]))
    await media.say(clip("hello"), silence_ms=800)
    await media.play(fake_tts, "Yes, I am here.")
    await media.hang_up()
    stored = await turns()
    assert [t.text for t in stored] == [GREETING, "Are you there?", "Yes, I am here."]


async def test_hanging_up_mid_speech_stores_what_was_spoken_and_leaves_no_task(
    media, fake_stt, fake_tts, fake_anthropic
):
    fake_tts.chunk_delay = 0.05  # the reply is still being synthesised when the caller hangs up
    fake_stt.reply_with("Tell me everything.")
    fake_anthropic.queue(FakeReply(tokens=["Here is a long answer", " that goes on and on", " for a while."]))
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)
    await media.next_event("media")
    before = {t for t in asyncio.all_tasks() if not t.done()}
    await media.hang_up()

    stored = await turns()
    assert stored[1].text == "Tell me everything." and stored[2].role == "assistant"
    reply = stored[2]  # nothing was played (no mark echoed): the caller heard none of it
    assert reply.interrupted and reply.text == "" and reply.generated_text.startswith("Here is a long answer")
    call = await Call.objects.aget(call_sid=CALL_SID)
    assert call.ended_at is not None
    lingering = [
        t for t in before if not t.done() and (t.get_name().startswith(("speaker:", "reply:", "stt", "tts")))
    ]
    assert lingering == []
