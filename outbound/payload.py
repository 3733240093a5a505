"""What a `call.summarized` webhook carries: the call, its transcript and its summary.

The body is built once per event and stored on each delivery, so a retry or a re-send sends
exactly the bytes the first attempt signed (with a fresh timestamp).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from calls.models import Call


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def call_summarized_body(call: Call) -> dict[str, Any]:
    """The event's content: `text` is what the caller heard, `generated_text` everything the model
    wrote (the unheard rest included; empty on the caller's turns)."""
    turns = call.turns.in_order().values(
        "sequence", "role", "text", "generated_text", "interrupted", "tool_calls"
    )
    return {
        "call": {
            "call_sid": call.call_sid,
            "persona": call.persona.slug,
            "from": call.from_number,
            "to": call.to_number,
            "direction": call.direction,
            "status": call.status,
            "started_at": _iso(call.started_at),
            "ended_at": _iso(call.ended_at),
            "duration_seconds": call.duration_seconds,
            "summary_outcome": call.summary_outcome,
        },
        "transcript": [dict(turn) for turn in turns],
        "summary": call.summary_data,
    }


def envelope(event: str, *, delivery_id: int, created: datetime, body: dict[str, Any]) -> dict[str, Any]:
    """The payload as sent: the delivery's id (the same on every retry and re-send, for receivers
    to drop duplicates), then the event's content."""
    return {"event": event, "id": delivery_id, "created": created.isoformat(), **body}


def payload_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes posted and signed."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
