"""Twilio's side of a Media Streams call, played against a running Switchboard: the voice webhook,
then the `<Connect><Stream>` socket (docs: mediastreams.md §2-3), with a caller who speaks
recorded clips at real-time pace and a phone that plays back what the agent sends.

What Twilio does, and so what this does:
- sends `connected`, then `start` (streamSid, callSid, the TwiML's `<Parameter>`s), then one
  20 ms `media` frame (160 bytes of 8 kHz mu-law) every 20 ms for as long as the call lasts:
  the caller's clips, and silence (0xFF) between them;
- plays the agent's `media` in the order received, and echoes each `mark` once the audio queued
  before it has played (8 bytes = 1 ms), or at once when nothing is queued;
- on `clear`, drops the audio not yet played and echoes every pending mark immediately.

Timings are recorded on the monotonic clock for tests and benchmarks (MediaStats). The script is
a list of steps: `say <clip>`, `wait <seconds>`, `barge <clip>` (talk over the agent: wait until
its audio is playing, then speak), `listen <seconds>` (until the agent has spoken and stopped, at
most that long), `digits 123#`, `hangup`.

No Django imports: the command passes the settings in, so tests can drive MediaCaller against any
websocket server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import wave
import xml.etree.ElementTree as ET
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import audioop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from calls.media.audio import ulaw_to_pcm16
from calls.media.clips import NAMES as CLIP_NAMES
from calls.media.clips import clip
from calls.simulator.relay import (
    DTMF_KEYS,
    PhoneCall,
    SimulatorError,
    new_sid,
    post_voice_webhook,
    twilio_signature,
)

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law: what Twilio sends
FRAME_SECONDS = 0.02
BYTES_PER_SECOND = 8000
SILENCE = b"\xff" * FRAME_BYTES  # mu-law zero
SPEECH_RMS = 500  # a frame louder than this (PCM16 RMS) is speech: where a clip's voice starts
BARGE_WAIT = 20.0  # seconds a `barge` waits for the agent's audio before talking anyway
DEFAULT_SCRIPT = "say hello; wait 3; barge interrupt; wait 3; say thanks; wait 4; hangup"
SCRIPT_HELP = (
    "steps separated by ';': say CLIP, wait SECONDS, barge CLIP, listen SECONDS (until the agent "
    "stops talking, at most that long), digits KEYS, hangup"
)
QUIET = 0.5  # seconds without agent audio playing or arriving that `listen` takes for the end of a reply


# --- TwiML ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamTwiml:
    """What Twilio takes from `<Connect><Stream>` to open the stream."""

    url: str
    parameters: dict[str, str]
    action: str = ""


def parse_stream_twiml(twiml: str | bytes) -> StreamTwiml:
    """Read the stream URL and `<Parameter>`s; SimulatorError for any other answer."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise SimulatorError(f"the voice webhook did not answer TwiML ({exc})") from exc
    connect_ = root.find("./Connect")
    stream = connect_.find("Stream") if connect_ is not None else None
    if connect_ is None or stream is None or not stream.get("url"):
        said = " ".join(text.strip() for text in root.itertext() if text.strip())
        relay = (
            " (it connected ConversationRelay: drop --media)"
            if root.find(".//ConversationRelay") is not None
            else ""
        )
        raise SimulatorError(
            "the voice webhook did not connect the call to a media stream"
            + relay
            + (f"; it said: {said!r}" if said else "")
        )
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return StreamTwiml(url=stream.get("url", ""), parameters=parameters, action=connect_.get("action", ""))


# --- the script ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    kind: str  # say, wait, barge, listen, digits, hangup
    arg: str = ""


def parse_script(text: str) -> list[Step]:
    """`say hello; wait 3; barge interrupt; digits 12#; hangup` (also one step a line; # comments)."""
    steps: list[Step] = []
    for raw in text.replace("\n", ";").split(";"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, arg = line.partition(" ")
        kind, arg = kind.lower(), arg.strip()
        if kind in ("say", "barge"):
            if arg not in CLIP_NAMES:
                raise SimulatorError(f"{line!r}: no clip named {arg!r}; have {', '.join(CLIP_NAMES)}")
        elif kind in ("wait", "listen"):
            try:
                if float(arg) < 0:
                    raise ValueError
            except ValueError:
                raise SimulatorError(f"{line!r}: {kind} takes a number of seconds") from None
        elif kind == "digits":
            arg = arg.replace(" ", "")
            if not arg or not set(arg) <= DTMF_KEYS:
                raise SimulatorError(f"{line!r}: digits takes keys from 0-9 * #")
        elif kind != "hangup" or arg:
            raise SimulatorError(f"{line!r}: unknown step; {SCRIPT_HELP}")
        steps.append(Step(kind, arg))
    return steps


# --- what is recorded ---------------------------------------------------------------------------
@dataclass
class Utterance:
    """One clip the caller says, and what the agent did about it (monotonic seconds)."""

    name: str
    barge: bool
    frames: list[bytes]
    speech_frame: int  # index of the first frame with voice in it
    position: int = 0  # frames sent so far
    first_frame_at: float | None = None
    speech_at: float | None = None  # when the first frame with voice in it was sent
    last_frame_at: float | None = None
    agent_playing: bool = False  # agent audio was playing when the first frame went out
    clear_at: float | None = None  # the first `clear` after the first frame, before the next utterance
    first_audio_at: float | None = None  # the first agent media after the last frame (and the clear)
    sent: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def barge_in_ms(self) -> float | None:
        """First voiced frame sent -> `clear` received."""
        if self.clear_at is None or self.speech_at is None:
            return None
        return (self.clear_at - self.speech_at) * 1000

    @property
    def end_of_turn_ms(self) -> float | None:
        """Last frame sent -> the agent's first audio after it."""
        if self.first_audio_at is None or self.last_frame_at is None:
            return None
        return (self.first_audio_at - self.last_frame_at) * 1000


@dataclass
class MarkEcho:
    name: str
    received_at: float
    due_at: float  # when the audio queued before it finishes playing
    queued_ms: float  # audio queued ahead of it when it arrived
    echoed_at: float | None = None
    cleared: bool = False  # echoed at once because of a `clear`


@dataclass
class MediaStats:
    started_at: float | None = None  # `start` sent
    frames_sent: int = 0
    max_send_lag_ms: float = 0.0  # how late the worst caller frame went out against its slot
    utterances: list[Utterance] = field(default_factory=list)
    dtmf_sent: int = 0
    media_received: int = 0
    bytes_received: int = 0
    sizes: Counter[int] = field(default_factory=Counter)  # outbound payload sizes
    short_mid_phrase: int = 0  # a short frame followed by more audio before a mark: a gap
    first_audio_at: float | None = None
    clears: list[float] = field(default_factory=list)
    marks: list[MarkEcho] = field(default_factory=list)
    marks_out_of_order: int = 0  # numbered marks (s1, s2...) arriving with a lower number
    frames: list[tuple[int, float, int]] = field(default_factory=list)  # (index, at, size), if kept
    other_events: Counter[str] = field(default_factory=Counter)
    dropped_bytes: int = 0  # agent audio a `clear` removed before it played
    closed_by_server: bool = False
    close_code: int | None = None

    @property
    def marks_echoed(self) -> int:
        return sum(m.echoed_at is not None for m in self.marks)


def speech_start(audio: bytes) -> int:
    """Index of the first 20 ms frame of `audio` with voice in it (0 if none is loud)."""
    for n in range(0, len(audio), FRAME_BYTES):
        if audioop.rms(ulaw_to_pcm16(audio[n : n + FRAME_BYTES]), 2) > SPEECH_RMS:
            return n // FRAME_BYTES
    return 0


def utterance(name: str, *, barge: bool = False) -> Utterance:
    audio = clip(name)
    audio += b"\xff" * (-len(audio) % FRAME_BYTES)  # a whole last frame, padded with silence
    frames = [audio[n : n + FRAME_BYTES] for n in range(0, len(audio), FRAME_BYTES)]
    return Utterance(name, barge, frames, speech_start(audio))


# --- the phone ----------------------------------------------------------------------------------
class MediaCaller:
    """Plays Twilio on one open Media Streams socket: the caller's audio out at real-time pace,
    the agent's audio played back on the same clock, marks echoed as Twilio would."""

    def __init__(
        self,
        ws: ClientConnection,
        call: PhoneCall,
        parameters: dict[str, str],
        *,
        out: TextIO | None = None,
        keep_audio: bool = True,
        keep_frames: bool = False,
    ) -> None:
        self.ws = ws
        self.call = call
        self.parameters = dict(parameters)
        self.out = out
        self.keep_audio = keep_audio
        self.keep_frames = keep_frames
        self.stream_sid = new_sid("MZ")
        self.stats = MediaStats()
        self.played = bytearray()  # the agent's audio as the caller heard it
        self._sequence = 0
        self._chunk = 0
        self._speaking: deque[Utterance] = deque()  # queued for the streamer
        self._current: Utterance | None = None  # the last utterance started
        self._pending_audio: deque[tuple[bytes, float]] = deque()  # (payload, ends playing at)
        self._play_until = 0.0
        self._marks: deque[MarkEcho] = deque()  # waiting for their audio to play
        self._wake = asyncio.Event()  # the mark player has something new
        self._audio_arrived = asyncio.Event()
        self._short_pending = False  # the last frame was short and no mark followed yet
        self._last_mark_number = 0
        self._closed = asyncio.Event()  # the socket is gone
        self._hanging_up = False
        self._streamer_done = asyncio.Event()
        self._last_audio_at = 0.0
        self._deadline: float | None = None

    # --- running the script ---------------------------------------------------------------------
    async def run(self, steps: list[Step], *, deadline: float | None = None) -> MediaStats:
        """Act out `steps`, then hang up; with `deadline` (monotonic), hang up then at the latest."""
        self._deadline = deadline
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send_start()
        tasks = [
            asyncio.create_task(self._receive(), name="media-receive"),
            asyncio.create_task(self._player(), name="media-player"),
            asyncio.create_task(self._stream(), name="media-stream"),
        ]
        try:
            for step in steps:
                if self._closed.is_set() or self._past_deadline() or not await self._act(step):
                    break
        except ConnectionClosed:
            pass
        finally:
            await self.hang_up()
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._settle_playback(time.monotonic())
        return self.stats

    async def _act(self, step: Step) -> bool:
        match step.kind:
            case "say":
                await self.say(step.arg)
            case "barge":
                await self.barge(step.arg)
            case "wait":
                await self._sleep(float(step.arg))
            case "listen":
                await self.listen(float(step.arg))
            case "digits":
                await self.digits(step.arg)
            case "hangup":
                return False
        return True

    async def say(self, name: str, *, barge: bool = False) -> Utterance:
        """Speak a clip and return once its last frame is sent (or the call ended)."""
        said = utterance(name, barge=barge)
        self.stats.utterances.append(said)
        self._speaking.append(said)
        self._print(f"[caller {'talks over the agent' if barge else 'says'}: {name}]")
        await self._until(said.sent.wait())
        return said

    async def barge(self, name: str) -> Utterance:
        """Wait (bounded) until the agent's audio is playing, then talk over it."""
        deadline = time.monotonic() + BARGE_WAIT
        while not self.playing and not self._closed.is_set() and not self._past_deadline():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._print(f"[no agent audio within {BARGE_WAIT:g} s: talking anyway]")
                break
            self._audio_arrived.clear()
            await self._until(self._audio_arrived.wait(), timeout=remaining)
        return await self.say(name, barge=True)

    async def listen(self, longest: float) -> None:
        """Until the agent has said something and stopped (no audio playing or arriving for
        QUIET seconds), at most `longest` seconds."""
        deadline = time.monotonic() + longest
        heard_before = self.stats.media_received
        while not self._closed.is_set():
            now = time.monotonic()
            if now >= deadline or self._past_deadline():
                return
            quiet_since = max(self._play_until, self._last_audio_at)
            if self.stats.media_received > heard_before and now - quiet_since >= QUIET:
                return
            self._audio_arrived.clear()
            # Wake when audio arrives, when it would be quiet long enough, or at the deadline.
            wake = (
                max(quiet_since + QUIET, now + FRAME_SECONDS)
                if self.stats.media_received > heard_before
                else deadline
            )
            await self._until(self._audio_arrived.wait(), timeout=min(wake, deadline) - now)

    async def digits(self, keys: str) -> None:
        for key in keys:
            await self._send(
                {
                    "event": "dtmf",
                    "streamSid": self.stream_sid,
                    "sequenceNumber": self._next_sequence(),
                    "dtmf": {"track": "inbound_track", "digit": key},
                }
            )
            self.stats.dtmf_sent += 1
        self._print(f"[caller presses {keys}]")

    async def hang_up(self) -> None:
        """Stop the caller's audio, send `stop`, close the socket."""
        if self._hanging_up:
            return
        self._hanging_up = True
        await self._until(self._streamer_done.wait(), timeout=1.0)
        if not self._closed.is_set():
            self._print("[caller hangs up]")
            with contextlib.suppress(ConnectionClosed):
                await self._send(
                    {
                        "event": "stop",
                        "sequenceNumber": self._next_sequence(),
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.call.account_sid, "callSid": self.call.call_sid},
                    }
                )
        await self.ws.close()

    @property
    def playing(self) -> bool:
        """Agent audio is queued at the phone and not yet played out."""
        return self._play_until > time.monotonic()

    # --- the caller's audio ---------------------------------------------------------------------
    async def _stream(self) -> None:
        """One frame every 20 ms on an absolute schedule (no drift): clips, else silence."""
        try:
            started = time.monotonic()
            while not self._hanging_up and not self._closed.is_set():
                slot = started + self._chunk * FRAME_SECONDS
                delay = slot - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.stats.max_send_lag_ms = max(self.stats.max_send_lag_ms, -delay * 1000)
                said = self._speaking[0] if self._speaking else None
                if said is not None and said.first_frame_at is None:
                    said.agent_playing = self.playing
                    self._current = said
                frame = said.frames[said.position] if said is not None else SILENCE
                await self._send_media(frame)
                if said is not None:
                    self._sent_frame(said)
        except ConnectionClosed:
            pass
        finally:
            self._streamer_done.set()
            for said in self._speaking:
                said.sent.set()

    def _sent_frame(self, said: Utterance) -> None:
        now = time.monotonic()
        if said.position == 0:
            said.first_frame_at = now
        if said.position == said.speech_frame:
            said.speech_at = now
        said.position += 1
        if said.position == len(said.frames):
            said.last_frame_at = now
            self._speaking.popleft()
            said.sent.set()

    async def _send_media(self, frame: bytes) -> None:
        self._chunk += 1
        payload = base64.b64encode(frame).decode("ascii")
        # Fifty a second per call: formatted directly, as Twilio's own field order.
        await self.ws.send(
            f'{{"event":"media","sequenceNumber":"{self._next_sequence()}","media":{{"track":"inbound",'
            f'"chunk":"{self._chunk}","timestamp":"{(self._chunk - 1) * 20}","payload":"{payload}"}},'
            f'"streamSid":"{self.stream_sid}"}}'
        )
        self.stats.frames_sent += 1

    async def _send_start(self) -> None:
        self.stats.started_at = time.monotonic()
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_sequence(),
                "start": {
                    "accountSid": self.call.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": self.stream_sid,
            }
        )

    # --- the agent's audio ----------------------------------------------------------------------
    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = None
                if not isinstance(frame, dict):
                    self.stats.other_events["malformed"] += 1
                    self._print(f"[not a JSON object; Twilio would count it as malformed] {str(raw)[:80]!r}")
                    continue
                match frame.get("event"):
                    case "media":
                        self._on_media(frame, now)
                    case "mark":
                        self._on_mark(frame, now)
                    case "clear":
                        await self._on_clear(now)
                    case other:
                        self.stats.other_events[str(other)] += 1
                        self._print(
                            f"[unexpected {other!r} event; Twilio answers error 31951] {str(raw)[:80]}"
                        )
        except ConnectionClosed:
            pass
        finally:
            if not self._hanging_up:
                self.stats.closed_by_server = True
                reason = f" {self.ws.close_reason}" if self.ws.close_reason else ""
                self._print(f"[the server closed the socket: {self.ws.close_code}{reason}]")
            self.stats.close_code = self.ws.close_code
            self._closed.set()
            self._wake.set()
            self._audio_arrived.set()

    def _on_media(self, frame: dict[str, Any], now: float) -> None:
        try:
            audio = base64.b64decode(frame["media"]["payload"], validate=True)
        except (KeyError, TypeError, ValueError):
            self.stats.other_events["bad media"] += 1
            return
        stats = self.stats
        if self._short_pending:
            stats.short_mid_phrase += 1
        self._short_pending = len(audio) < FRAME_BYTES
        if self.keep_frames:
            stats.frames.append((stats.media_received, now, len(audio)))
        stats.media_received += 1
        stats.bytes_received += len(audio)
        stats.sizes[len(audio)] += 1
        if stats.first_audio_at is None:
            stats.first_audio_at = now
            self._print(f"[agent audio starts {(now - (stats.started_at or now)) * 1000:.0f} ms after start]")
        said = self._current
        # The answer to a turn: audio after its last frame, unless it is the rest of a reply that
        # was playing when the caller began and was never cleared.
        if (
            said is not None
            and said.last_frame_at is not None
            and said.first_audio_at is None
            and (said.clear_at is not None or not said.agent_playing)
        ):
            said.first_audio_at = now
            self._print(f"[agent answers {said.end_of_turn_ms:.0f} ms after the caller's last frame]")
        self._settle_playback(now)
        start = max(self._play_until, now)
        self._play_until = start + len(audio) / BYTES_PER_SECOND
        self._pending_audio.append((audio, self._play_until))
        self._last_audio_at = now
        self._audio_arrived.set()

    def _on_mark(self, frame: dict[str, Any], now: float) -> None:
        mark = frame.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str) or not name:
            self.stats.other_events["bad mark"] += 1
            return
        self._short_pending = False
        number = name.lstrip("abcdefghijklmnopqrstuvwxyz")
        if number.isdigit():
            if int(number) < self._last_mark_number:
                self.stats.marks_out_of_order += 1
            self._last_mark_number = int(number)
        queued = max(0.0, self._play_until - now)
        echo = MarkEcho(name, now, max(self._play_until, now), queued * 1000)
        self.stats.marks.append(echo)
        self._marks.append(echo)
        self._wake.set()

    async def _on_clear(self, now: float) -> None:
        """Twilio empties its buffer: unplayed audio is gone, pending marks are echoed at once."""
        self.stats.clears.append(now)
        said = self._current
        if said is not None and said.first_frame_at is not None and said.clear_at is None:
            said.clear_at = now
            if said.barge_in_ms is not None:
                self._print(f"[clear {said.barge_in_ms:.0f} ms after the caller started talking]")
        self._settle_playback(now, clear=True)
        self._play_until = now
        self._short_pending = False
        pending = list(self._marks)
        self._marks.clear()
        for echo in pending:
            echo.cleared = True
            await self._echo(echo)

    def _settle_playback(self, now: float, *, clear: bool = False) -> None:
        """Move played audio from the queue to `played`; with `clear`, drop the unplayed rest."""
        while self._pending_audio:
            audio, ends_at = self._pending_audio[0]
            if ends_at <= now:
                self._pending_audio.popleft()
                if self.keep_audio:
                    self.played += audio
                continue
            if not clear:
                return
            # The frame playing now: what had played of it is heard, the rest is dropped.
            begins_at = ends_at - len(audio) / BYTES_PER_SECOND
            heard = max(0, min(len(audio), int((now - begins_at) * BYTES_PER_SECOND)))
            if self.keep_audio:
                self.played += audio[:heard]
            self.stats.dropped_bytes += len(audio) - heard
            self._pending_audio.popleft()
            while self._pending_audio:
                self.stats.dropped_bytes += len(self._pending_audio.popleft()[0])
            return

    async def _player(self) -> None:
        """Echo each mark when the audio before it has played, in order."""
        while not self._closed.is_set():
            self._wake.clear()
            if not self._marks:
                await self._wake.wait()
                continue
            delay = self._marks[0].due_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            await self._echo(self._marks.popleft())

    async def _echo(self, echo: MarkEcho) -> None:
        try:
            await self._send(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_sequence(),
                    "streamSid": self.stream_sid,
                    "mark": {"name": echo.name},
                }
            )
        except ConnectionClosed:
            return
        echo.echoed_at = time.monotonic()

    # --- plumbing ---------------------------------------------------------------------------------
    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def _sleep(self, seconds: float) -> None:
        await self._until(self._closed.wait(), timeout=seconds)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def _until(self, work: Any, timeout: float | None = None) -> None:
        """Await `work`, but no longer than the socket lives (and `timeout`, and the deadline)."""
        if self._deadline is not None and not self._hanging_up:
            remaining = max(0.0, self._deadline - time.monotonic())
            timeout = remaining if timeout is None else min(timeout, remaining)
        waiter = asyncio.ensure_future(work)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({waiter, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closed.cancel()

    def _print(self, line: str) -> None:
        if self.out is not None:
            self.out.write(f"{line}\n")
            self.out.flush()

    def write_wav(self, path: str | Path) -> None:
        """What the caller heard, as 8 kHz PCM16 WAV."""
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(BYTES_PER_SECOND)
            out.writeframes(ulaw_to_pcm16(bytes(self.played)))

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"[sent {s.frames_sent} media frames ({s.frames_sent * FRAME_SECONDS:.1f} s), "
            f"{s.dtmf_sent} digits; worst send lag {s.max_send_lag_ms:.0f} ms]",
            f"[received {s.media_received} media frames ({s.bytes_received / BYTES_PER_SECOND:.1f} s; "
            f"sizes {dict(sorted(s.sizes.items()))}), {len(s.marks)} marks ({s.marks_echoed} echoed, "
            f"{sum(m.cleared for m in s.marks)} on a clear), {len(s.clears)} clears]",
        ]
        for said in s.utterances:
            figures = []
            if said.barge_in_ms is not None:
                figures.append(f"clear after {said.barge_in_ms:.0f} ms")
            if said.end_of_turn_ms is not None:
                figures.append(f"answer after {said.end_of_turn_ms:.0f} ms")
            kind = "barge" if said.barge else "say"
            lines.append(f"[{kind} {said.name}: {', '.join(figures) or 'no reaction'}]")
        if s.short_mid_phrase or s.marks_out_of_order or s.other_events:
            lines.append(
                f"[problems: {s.short_mid_phrase} short frames mid-phrase, {s.marks_out_of_order} "
                f"marks out of order, other events {dict(s.other_events)}]"
            )
        return "\n".join(lines)


async def open_stream(
    url: str, *, token: str, signed_url: str | None = None, **options: Any
) -> ClientConnection:
    """The socket, signed as Twilio signs it: the URL exactly as the TwiML gave it."""
    headers = {"X-Twilio-Signature": twilio_signature(token, signed_url or url)} if token else {}
    try:
        return await connect(url, additional_headers=headers, **options)
    except InvalidStatus as exc:
        raise SimulatorError(f"{url} refused the websocket: HTTP {exc.response.status_code}") from exc
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise SimulatorError(f"could not open {url}: {exc}") from exc


async def simulate_media_call(
    *,
    base_url: str,
    public_base_url: str,
    token: str,
    from_number: str,
    to_number: str,
    steps: list[Step],
    out: TextIO | None = None,
    stream_url: str | None = None,
    wav: str | Path | None = None,
    keep_frames: bool = False,
    connect_options: dict[str, Any] | None = None,
    seconds: float | None = None,
) -> MediaCaller:
    """One whole call: the voice webhook, then the media socket (`stream_url`, by default the one
    in the TwiML), signed like Twilio signs them when `token` is set; hung up after `seconds` on
    the socket at the latest."""
    call = PhoneCall(from_number=from_number, to_number=to_number)
    if out is not None:
        out.write(f"[calling {to_number} from {from_number}: {call.call_sid}]\n")
    twiml = parse_stream_twiml(
        await asyncio.to_thread(
            post_voice_webhook, call, base_url=base_url, public_base_url=public_base_url, token=token
        )
    )
    url = stream_url or twiml.url
    ws = await open_stream(url, token=token, signed_url=twiml.url, **(connect_options or {}))
    async with ws:
        caller = MediaCaller(
            ws, call, twiml.parameters, out=out, keep_audio=wav is not None, keep_frames=keep_frames
        )
        await caller.run(steps, deadline=None if seconds is None else time.monotonic() + seconds)
    if out is not None:
        out.write(caller.summary() + "\n")
    if wav is not None:
        caller.write_wav(wav)
        if out is not None:
            out.write(
                f"[the agent's audio as heard: {wav} ({len(caller.played) / BYTES_PER_SECOND:.1f} s)]\n"
            )
    return caller
