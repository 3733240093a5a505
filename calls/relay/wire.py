"""The ConversationRelay wire format: parsing Twilio's frames, writing ours.

Parsing is strict about what we rely on and lenient about the rest: unknown fields are
ignored, and anything we cannot use raises FrameError with a reason for the log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calls import twilio_ids
from calls.engine.events import CallStart
from calls.frames import FrameError, parse_json_frame
from calls.twilio_ids import sid_problem


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    last: bool = True
    lang: str = ""


@dataclass(frozen=True, slots=True)
class Interrupt:
    utterance: str
    duration_ms: float | None


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class RelayError:
    description: str


@dataclass(frozen=True, slots=True)
class Info:
    name: str
    value: str


Frame = CallStart | Prompt | Interrupt | Dtmf | RelayError | Info


def _str(data: dict, key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str | int | float):
        raise FrameError(f"{data.get('type')}: {key} is not a string")
    return str(value)


def _number(value: object) -> float | None:
    # Twilio documents a number; one of its own samples types it as a string.
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _setup(data: dict) -> CallStart:
    call_sid = _str(data, "callSid")
    if not call_sid:
        raise FrameError("setup without callSid")
    # The frame that binds the call: its identifiers go into queries and columns, so they must be Twilio's.
    problem = (
        sid_problem("callSid", call_sid, twilio_ids.CALL)
        or sid_problem("accountSid", _str(data, "accountSid"), twilio_ids.ACCOUNT, required=False)
        or sid_problem("sessionId", _str(data, "sessionId"), twilio_ids.ANY, required=False)
    )
    if problem:
        raise FrameError(f"setup: {problem}")
    params = data.get("customParameters") or {}
    if not isinstance(params, dict):
        raise FrameError("setup: customParameters is not an object")
    # Parsed straight into the engine's own start event: the wire adds nothing it needs.
    return CallStart(
        call_sid=call_sid,
        session_id=_str(data, "sessionId"),
        from_number=_str(data, "from"),
        to_number=_str(data, "to"),
        direction=_str(data, "direction", "inbound") or "inbound",
        custom_parameters={str(k): str(v) for k, v in params.items()},
    )


def _prompt(data: dict) -> Prompt:
    if "voicePrompt" not in data:
        raise FrameError("prompt without voicePrompt")
    return Prompt(
        text=_str(data, "voicePrompt"), last=data.get("last", True) is not False, lang=_str(data, "lang")
    )


PARSERS: dict[str, Callable[[dict[str, Any]], Frame]] = {
    "setup": _setup,
    "prompt": _prompt,
    "interrupt": lambda d: Interrupt(
        _str(d, "utteranceUntilInterrupt"), _number(d.get("durationUntilInterruptMs"))
    ),
    "dtmf": lambda d: Dtmf(_str(d, "digit")),
    "error": lambda d: RelayError(_str(d, "description")),
    "info": lambda d: Info(_str(d, "name"), _str(d, "value")),
}


def parse_frame(raw: str | bytes | None) -> Frame:
    return parse_json_frame(raw, "type", PARSERS)


# Outgoing frames. Tokens go out thousands of times a second under load: format them directly.
_TEXT = '{"type":"text","token":%s,"last":%s}'


def text_frame(token: str, last: bool) -> str:
    return _TEXT % (json.dumps(token, ensure_ascii=False), "true" if last else "false")


def end_frame(handoff_data: str | None = None) -> str:
    frame: dict[str, str] = {"type": "end"}
    if handoff_data is not None:
        frame["handoffData"] = handoff_data
    return json.dumps(frame)


def language_frame(code: str) -> str:
    """Switch both text-to-speech and transcription to `code` for the rest of the session."""
    return json.dumps({"type": "language", "ttsLanguage": code, "transcriptionLanguage": code})
