"""The Media Streams wire format (mediastreams.md §2-3): parsing Twilio's events, writing ours.

Lenient about what we do not use (unknown fields are ignored), strict about what we rely on:
anything unusable raises FrameError with a reason, and the consumer drops and counts it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calls import twilio_ids
from calls.engine.events import CallStart
from calls.frames import FrameError, parse_json_frame
from calls.twilio_ids import sid_problem

MAX_PAYLOAD_BYTES = 16_000  # two seconds of mu-law in one event is already far from Twilio's 20 ms


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call: CallStart  # customParameters carry what the socket needs (the TwiML's <Parameter>s)


@dataclass(frozen=True, slots=True)
class Media:
    payload: bytes  # raw 8 kHz mu-law, no header
    timestamp_ms: int  # the caller-audio clock: ms since the stream started


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str


Event = Connected | Start | Media | Mark | Dtmf | Stop


def _object(data: dict, key: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise FrameError(f"{data.get('event')}: {key} is not an object")
    return value


def _str(data: dict, key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str | int):
        raise FrameError(f"{key} is not a string")
    return str(value)


def _start(data: dict) -> Start:
    start = _object(data, "start")
    stream_sid = _str(start, "streamSid") or _str(data, "streamSid")
    call_sid = _str(start, "callSid")
    if not stream_sid or not call_sid:
        raise FrameError("start without streamSid or callSid")
    # The event that binds the call: its identifiers go into queries and columns, so they must be Twilio's.
    problem = (
        sid_problem("streamSid", stream_sid, twilio_ids.STREAM)
        or sid_problem("callSid", call_sid, twilio_ids.CALL)
        or sid_problem("accountSid", _str(start, "accountSid"), twilio_ids.ACCOUNT, required=False)
    )
    if problem:
        raise FrameError(f"start: {problem}")
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise FrameError("start: customParameters is not an object")
    params = {str(k): str(v) for k, v in params.items()}
    # The call was described by its voice webhook already: the stream only names it.
    call = CallStart(call_sid=call_sid, session_id=stream_sid, custom_parameters=params)
    return Start(stream_sid=stream_sid, call=call)


def _media(data: dict) -> Media:
    media = _object(data, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise FrameError("media without a payload")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("media payload is not base64") from None
    if not audio or len(audio) > MAX_PAYLOAD_BYTES:
        raise FrameError(f"media payload of {len(audio)} bytes")
    try:
        timestamp = int(media.get("timestamp") or 0)
    except (TypeError, ValueError):
        raise FrameError("media timestamp is not a number") from None
    return Media(audio, timestamp)


def _mark(data: dict) -> Mark:
    name = _str(_object(data, "mark"), "name")
    if not name:
        raise FrameError("mark without a name")
    return Mark(name)


def _dtmf(data: dict) -> Dtmf:
    digit = _str(_object(data, "dtmf"), "digit")
    if len(digit) != 1:
        raise FrameError(f"dtmf digit {digit[:10]!r}")
    return Dtmf(digit)


PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "connected": lambda d: Connected(_str(d, "protocol")),
    "start": _start,
    "media": _media,
    "mark": _mark,
    "dtmf": _dtmf,
    "stop": lambda d: Stop(_str(d.get("stop") or {}, "callSid") if isinstance(d.get("stop"), dict) else ""),
}


def parse_event(raw: str | bytes | None) -> Event:
    if isinstance(raw, bytes):
        raise FrameError("binary frame: Twilio sends JSON text")
    return parse_json_frame(raw, "event", PARSERS)


# Outgoing events: exactly the documented keys (anything else is Twilio error 31951).
def media_event(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    # Fifty of these a second per call: formatted directly, base64 needs no JSON escaping.
    return f'{{"event":"media","streamSid":{json.dumps(stream_sid)},"media":{{"payload":"{payload}"}}}}'


def mark_event(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_event(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
