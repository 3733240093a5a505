"""The Media Streams simulator against a tiny stand-in for Switchboard's socket: what it sends
(Twilio's events, real clip audio at real-time pace), and how it plays back what it receives
(marks echoed when their audio has played, all at once on `clear`, a WAV of what was heard).
No database: the stand-in is a plain websockets server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from agents.models import Persona
from calls.media.audio import ulaw_to_pcm16
from calls.media.clips import clip
from calls.models import Call
from calls.simulator.media import (
    DEFAULT_SCRIPT,
    FRAME_BYTES,
    MediaCaller,
    Step,
    parse_script,
    parse_stream_twiml,
    simulate_media_call,
    utterance,
)
from calls.simulator.relay import PhoneCall, SimulatorError
from calls.webhooks.twiml import connect_relay_twiml, connect_stream_twiml

PARAMS = {"call_id": "7", "persona_id": "3", "from": "+15550001111", "to": "+15550002222"}
TOLERANCE = 0.03  # seconds of scheduling slack on a loaded test machine


# --- TwiML and scripts ------------------------------------------------------------------------


def test_the_stream_twiml_is_read_as_twilio_reads_it(twilio_token):
    call = Call(pk=7, from_number="+15550001111", to_number="+15550002222", direction="inbound")
    twiml = parse_stream_twiml(connect_stream_twiml(call=call, persona=Persona(pk=3, name="Maya")))
    assert twiml.url == "wss://switchboard.example.com/ws/media/"
    assert twiml.action == "https://switchboard.example.com/twilio/stream-action/"
    assert twiml.parameters == {"call_id": "7", "persona_id": "3"}  # identifiers only: no phone numbers


def test_a_relay_answer_is_an_error_that_says_so(twilio_token):
    relay = connect_relay_twiml(call=Call(pk=7), persona=Persona(pk=3, name="Maya"), switchable=())
    with pytest.raises(SimulatorError, match="drop --media"):
        parse_stream_twiml(relay)


def test_scripts_parse_and_refuse_what_they_cannot_do():
    assert parse_script(DEFAULT_SCRIPT)[:3] == [
        Step("say", "hello"),
        Step("wait", "3"),
        Step("barge", "interrupt"),
    ]
    assert parse_script("digits 1 2#\n# a comment\nhangup") == [Step("digits", "12#"), Step("hangup")]
    for bad in ("say goodbye", "wait soon", "digits 12a", "sing", "hangup now"):
        with pytest.raises(SimulatorError):
            parse_script(bad)


# --- against a stand-in for the server --------------------------------------------------------

Play = Callable[["FakeSwitchboard", ServerConnection], Coroutine[Any, Any, None]]


def agent_frames(count: int, first: int = 0) -> list[bytes]:
    """Distinct 160-byte frames (not silence), so the WAV can be checked frame by frame."""
    return [bytes([(first + n) % 200 + 1]) * FRAME_BYTES for n in range(count)]


class FakeSwitchboard:
    """Plays the server's role: after `start`, runs `play` (which sends media, marks, clears and
    may close), while every event the simulator sends is recorded with its arrival time."""

    def __init__(self, play: Play) -> None:
        self.play = play
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.headers: dict[str, str] = {}
        self.started = asyncio.Event()
        self.changed = asyncio.Event()
        self.sent_at: dict[str, float] = {}  # when this side sent each mark or clear
        self.url = ""

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set by the handshake
        self.headers = dict(ws.request.headers)
        player: asyncio.Task | None = None
        try:
            async for raw in ws:
                event = json.loads(raw)
                self.events.append((time.monotonic(), event))
                self.changed.set()
                if event["event"] == "start":
                    player = asyncio.create_task(self.play(self, ws))
        finally:
            if player is not None:
                player.cancel()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for _, event in self.events if event["event"] == kind]

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wake on each event the simulator sends until `condition` holds (bounded)."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def send_audio(self, ws: ServerConnection, frames: list[bytes]) -> None:
        for frame in frames:
            payload = base64.b64encode(frame).decode()
            await ws.send(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}))

    async def mark(self, ws: ServerConnection, name: str) -> None:
        self.sent_at[name] = time.monotonic()
        await ws.send(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": name}}))

    async def clear(self, ws: ServerConnection) -> None:
        self.sent_at["clear"] = time.monotonic()
        await ws.send(json.dumps({"event": "clear", "streamSid": "MZ1"}))


@asynccontextmanager
async def fake_switchboard(play: Play) -> AsyncIterator[FakeSwitchboard]:
    fake = FakeSwitchboard(play)
    async with serve(fake.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/ws/media/"
        yield fake


async def call_with(fake: FakeSwitchboard, script: str, **options: Any) -> MediaCaller:
    phone = PhoneCall(from_number="+15550001111", to_number="+15550002222")
    async with connect(fake.url) as ws:
        caller = MediaCaller(ws, phone, PARAMS, out=StringIO(), **options)
        async with asyncio.timeout(30):
            await caller.run(parse_script(script))
    return caller


async def nothing(fake: FakeSwitchboard, ws: ServerConnection) -> None:
    pass


async def test_connected_and_start_come_first_then_the_clip_at_real_time_pace():
    async with fake_switchboard(nothing) as fake:
        caller = await call_with(fake, "wait 0.1; say interrupt; wait 0.1; digits 1#; hangup")

    kinds = [event["event"] for _, event in fake.events]
    assert kinds[:2] == ["connected", "start"]
    assert fake.events[0][1] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = fake.events[1][1]
    assert start["sequenceNumber"] == "1" and start["streamSid"] == caller.stream_sid
    assert start["start"]["callSid"] == caller.call.call_sid
    assert start["start"]["streamSid"] == caller.stream_sid
    assert start["start"]["customParameters"] == PARAMS
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert kinds[-1] == "stop" and fake.of("stop")[0]["stop"]["callSid"] == caller.call.call_sid
    assert [d["dtmf"]["digit"] for d in fake.of("dtmf")] == ["1", "#"]

    media = fake.of("media")
    payloads = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert {len(p) for p in payloads} == {FRAME_BYTES}
    assert [m["media"]["chunk"] for m in media] == [str(n) for n in range(1, len(media) + 1)]
    assert [m["media"]["timestamp"] for m in media] == [str(20 * n) for n in range(len(media))]
    sequence = [int(event["sequenceNumber"]) for _, event in fake.events if "sequenceNumber" in event]
    assert sequence == list(range(1, len(sequence) + 1))
    # The real clip, whole and in order, between silence frames.
    audio = b"".join(payloads)
    spoken = clip("interrupt")
    assert spoken in audio and audio.startswith(b"\xff" * FRAME_BYTES)
    # At real-time pace: 20 ms a frame on the simulator's clock and as they arrived.
    said = caller.stats.utterances[0]
    frames = len(said.frames)
    assert frames == -(-len(spoken) // FRAME_BYTES)
    assert said.last_frame_at - said.first_frame_at == pytest.approx((frames - 1) * 0.02, abs=TOLERANCE)
    arrivals = [at for at, event in fake.events if event["event"] == "media"]
    assert arrivals[-1] - arrivals[0] == pytest.approx((len(arrivals) - 1) * 0.02, abs=0.1)
    assert said.first_frame_at <= said.speech_at <= said.last_frame_at


async def test_a_mark_is_echoed_when_the_audio_before_it_has_played():
    async def play(fake: FakeSwitchboard, ws: ServerConnection) -> None:
        await fake.mark(ws, "m0")  # nothing queued: echoed at once
        await fake.send_audio(ws, agent_frames(25))  # 500 ms
        await fake.mark(ws, "m1")
        await fake.send_audio(ws, agent_frames(10, first=25))  # 200 ms more
        await fake.mark(ws, "m2")
        await fake.until(lambda: len(fake.of("mark")) == 3)
        await ws.close()

    async with fake_switchboard(play) as fake:
        caller = await call_with(fake, "wait 10")

    assert caller.stats.closed_by_server
    assert [m["mark"]["name"] for m in fake.of("mark")] == ["m0", "m1", "m2"]
    m0, m1, m2 = caller.stats.marks
    assert m0.queued_ms == 0 and m0.echoed_at - m0.received_at < TOLERANCE
    assert m1.queued_ms == pytest.approx(500, abs=TOLERANCE * 1000)
    for echo in (m1, m2):
        assert not echo.cleared
        waited = echo.echoed_at - echo.received_at
        assert echo.queued_ms / 1000 - 0.005 <= waited <= echo.queued_ms / 1000 + TOLERANCE
    # m2 plays 200 ms after m1 (both measured on the simulator's clock).
    assert m2.echoed_at - m1.echoed_at == pytest.approx(0.2, abs=TOLERANCE)
    assert caller.stats.media_received == 35 and caller.stats.sizes == {FRAME_BYTES: 35}
    assert caller.stats.marks_out_of_order == 0 and caller.stats.short_mid_phrase == 0


async def test_clear_drops_unplayed_audio_and_echoes_pending_marks_at_once(tmp_path):
    async def play(fake: FakeSwitchboard, ws: ServerConnection) -> None:
        await fake.send_audio(ws, agent_frames(100))  # 2 s
        await fake.mark(ws, "m1")
        await fake.send_audio(ws, agent_frames(50, first=100))  # 1 s more
        await fake.mark(ws, "m2")
        # Wait for 10 caller frames (200 ms of playback), then clear.
        await fake.until(lambda: len(fake.of("media")) >= 10)
        await fake.clear(ws)
        await fake.until(lambda: len(fake.of("mark")) == 2)
        await ws.close()

    async with fake_switchboard(play) as fake:
        caller = await call_with(fake, "wait 10")

    clear_at = caller.stats.clears[0]
    m1, m2 = caller.stats.marks
    for echo in (m1, m2):
        assert echo.cleared and clear_at <= echo.echoed_at < clear_at + TOLERANCE
        assert echo.echoed_at < echo.due_at  # long before their audio would have played
    assert [m["mark"]["name"] for m in fake.of("mark")] == ["m1", "m2"]
    # Only the audio played before the clear was heard; the rest was dropped.
    heard = len(caller.played)
    assert 0 < heard < 100 * FRAME_BYTES
    assert heard + caller.stats.dropped_bytes == 150 * FRAME_BYTES
    assert heard / 8000 == pytest.approx(clear_at - m1.received_at, abs=0.1)
    caller.write_wav(tmp_path / "heard.wav")
    with wave.open(str(tmp_path / "heard.wav")) as wav:
        assert wav.readframes(wav.getnframes()) == ulaw_to_pcm16(b"".join(agent_frames(100))[:heard])


async def test_the_wav_holds_the_audio_received_in_order(tmp_path):
    frames = agent_frames(30)

    async def play(fake: FakeSwitchboard, ws: ServerConnection) -> None:
        await fake.send_audio(ws, frames[:20])
        await fake.mark(ws, "s1")
        await fake.send_audio(ws, [*frames[20:], frames[0][:80]])  # a short last frame, as TTS ends
        await fake.mark(ws, "s2")
        await fake.until(lambda: len(fake.of("mark")) == 2)
        await ws.close()

    async with fake_switchboard(play) as fake:
        caller = await call_with(fake, "wait 10", keep_frames=True)

    caller.write_wav(tmp_path / "heard.wav")
    with wave.open(str(tmp_path / "heard.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == ulaw_to_pcm16(b"".join(frames) + frames[0][:80])
    stats = caller.stats
    assert [index for index, _, _ in stats.frames] == list(range(31))
    assert [size for _, _, size in stats.frames] == [FRAME_BYTES] * 30 + [80]
    assert stats.short_mid_phrase == 0 and stats.marks_echoed == 2


async def test_barge_waits_for_the_agents_audio_and_times_the_clear():
    async def play(fake: FakeSwitchboard, ws: ServerConnection) -> None:
        await asyncio.sleep(0.2)  # the agent starts talking a moment after start (no sync)
        await fake.send_audio(ws, agent_frames(150))  # 3 s
        await fake.mark(ws, "s1")
        # Clear on the first loud caller frame, as a VAD would (a bit later).
        loud = clip("interrupt")[:FRAME_BYTES]
        await fake.until(lambda: loud in payloads())
        await fake.clear(ws)
        # The answer to the barge-in, once the caller's whole clip has arrived.
        clip_end = payloads().index(loud) + len(utterance("interrupt").frames)
        await fake.until(lambda: len(fake.of("media")) >= clip_end)
        await fake.send_audio(ws, agent_frames(5, first=150))

    def payloads() -> list[bytes]:
        return [base64.b64decode(m["media"]["payload"]) for m in fake.of("media")]

    async with fake_switchboard(play) as fake:
        caller = await call_with(fake, "barge interrupt; wait 0.5; hangup")

    said = caller.stats.utterances[0]
    assert said.barge and said.agent_playing
    assert said.first_frame_at >= caller.stats.first_audio_at
    assert 0 <= said.barge_in_ms < 500
    assert caller.stats.marks[0].cleared
    assert said.end_of_turn_ms is not None and said.first_audio_at > said.last_frame_at


# --- the whole call: webhook, signed socket ----------------------------------------------------


@asynccontextmanager
async def voice_webhook(twiml: str) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A one-route HTTP server answering the voice webhook with `twiml`, recording requests."""
    requests: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            requests.append(
                {"path": self.path, "signature": self.headers.get("X-Twilio-Signature", ""), "body": body}
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.end_headers()
            self.wfile.write(twiml.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()


async def test_a_whole_call_signs_the_webhook_and_the_socket(tmp_path):
    token = "test-token"

    async def play(fake: FakeSwitchboard, ws: ServerConnection) -> None:
        await fake.send_audio(ws, agent_frames(10))
        await fake.mark(ws, "s1")

    async with fake_switchboard(play) as fake:
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://x.test/twilio/stream-action/">'
            f'<Stream url="{fake.url}"><Parameter name="call_id" value="9"/></Stream></Connect></Response>'
        )
        async with voice_webhook(twiml) as (base, requests):
            caller = await simulate_media_call(
                base_url=base,
                public_base_url="https://x.test",
                token=token,
                from_number="+15550001111",
                to_number="+15550002222",
                steps=parse_script("wait 0.5; hangup"),
                out=StringIO(),
                wav=tmp_path / "out.wav",
            )
    validator = RequestValidator(token)
    [request] = requests
    form = dict(parse_qsl(request["body"]))
    assert request["path"] == "/twilio/voice/" and form["To"] == "+15550002222"
    assert validator.validate("https://x.test/twilio/voice/", form, request["signature"])
    assert validator.validate(fake.url, {}, fake.headers["x-twilio-signature"])
    assert fake.of("start")[0]["start"]["customParameters"] == {"call_id": "9"}
    assert fake.of("mark")[0]["mark"]["name"] == "s1" and caller.stats.marks_echoed == 1
    with wave.open(str(tmp_path / "out.wav")) as wav:
        assert wav.getnframes() == 10 * FRAME_BYTES
