"""Twilio's call status callbacks: the authoritative word on where a call stands.

Callbacks arrive more than once and out of order. The highest SequenceNumber seen is kept in
`metadata["status_sequence"]` and older ones are ignored; a terminal status is never replaced
by a live one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from calls.models import Call
from calls.summaries.requests import summary_requests

logger = logging.getLogger(__name__)

STATUS_CALLBACK = "status-callback"

# Twilio's CallStatus values (lower case, hyphenated) to ours.
TWILIO_CALL_STATUSES: dict[str, str] = {
    "queued": Call.Status.RINGING,
    "initiated": Call.Status.RINGING,
    "ringing": Call.Status.RINGING,
    "in-progress": Call.Status.IN_PROGRESS,
    "completed": Call.Status.COMPLETED,
    "busy": Call.Status.BUSY,
    "failed": Call.Status.FAILED,
    "no-answer": Call.Status.NO_ANSWER,
    "canceled": Call.Status.CANCELED,
}


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StatusEvent:
    """The fields of one status callback that we act on."""

    call_sid: str
    call_status: str
    sequence: int | None = None
    duration: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> StatusEvent:
        return cls(
            call_sid=params.get("CallSid", ""),
            call_status=params.get("CallStatus", "").lower(),
            sequence=_int_or_none(params.get("SequenceNumber")),
            duration=_int_or_none(params.get("CallDuration")),
        )


@transaction.atomic
def call_status_record(event: StatusEvent) -> Call | None:
    """Apply one status callback to its call; None for a call we don't know. A terminal status
    ends the call and asks for its summary (once per call, whichever end signal is first)."""
    call = Call.objects.select_for_update().filter(call_sid=event.call_sid).first()
    if call is None:
        logger.warning("status callback for unknown call %r (%s)", event.call_sid, event.call_status)
        return None
    status = TWILIO_CALL_STATUSES.get(event.call_status)
    if status is None:
        logger.warning("status callback for call %s: unknown CallStatus %r", call.call_sid, event.call_status)
        return call
    last = call.metadata.get("status_sequence")
    if event.sequence is not None and last is not None and event.sequence <= last:
        logger.info("call %s: ignored status %s #%s (seen #%s)", call.call_sid, status, event.sequence, last)
        return call
    if event.sequence is not None:
        call.metadata["status_sequence"] = event.sequence

    if status in Call.Status.terminal():
        _apply_end(call, status=status, duration=event.duration)
    elif not call.is_over:  # a late "ringing" or "in-progress" never reopens an ended call
        call.status = status
        if status == Call.Status.IN_PROGRESS and call.started_at is None:
            call.started_at = timezone.now()
    call.save()
    if call.is_over:
        summary_requests([call])
    return call


def _apply_end(call: Call, *, status: str, duration: int | None) -> None:
    # Twilio's terminal status is authoritative: it replaces the one our socket guessed.
    call.status = status
    if call.ended_at is None:
        call.ended_at = timezone.now()
    if duration is not None:
        call.duration_seconds = duration
    elif call.duration_seconds is None and call.started_at:
        call.duration_seconds = int((call.ended_at - call.started_at).total_seconds())
    call.metadata["ended_by"] = STATUS_CALLBACK
    logger.info("call %s ended (%s, %s)", call.call_sid, STATUS_CALLBACK, status)
