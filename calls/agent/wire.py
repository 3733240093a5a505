"""The agent socket's frames (sdk/PROTOCOL.md, version 1): parsing what an agent sends, and
building what the server sends. Bounded, typed, and a FrameError that says why for anything else."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from calls.frames import FrameError, parse_json_frame

PROTOCOL_VERSION = 1
MAX_ID_CHARS = 128  # turn ids and request ids are ours or short client tokens


@dataclass(frozen=True, slots=True)
class ReplyWrite:
    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ReplyEnd:
    turn_id: str


@dataclass(frozen=True, slots=True)
class HistoryGet:
    request_id: str
    call_sid: str


AgentFrame = ReplyWrite | ReplyEnd | HistoryGet


def _id(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise FrameError(f"{key} must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _reply_write(data: dict[str, Any]) -> ReplyWrite:
    text = data.get("text")
    if not isinstance(text, str):
        raise FrameError("reply.write needs a text string")
    return ReplyWrite(_id(data, "turn_id"), text)


PARSERS: Mapping[str, Callable[[dict[str, Any]], AgentFrame]] = {
    "reply.write": _reply_write,
    "reply.end": lambda data: ReplyEnd(_id(data, "turn_id")),
    "history.get": lambda data: HistoryGet(_id(data, "request_id"), _id(data, "call_sid")),
}


def parse_frame(raw: str | bytes | None) -> AgentFrame:
    """An agent's frame, or FrameError (over 64 KiB, not JSON, unknown type, bad fields)."""
    return parse_json_frame(raw, "type", PARSERS)


def dumps(frame: Mapping[str, object]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
