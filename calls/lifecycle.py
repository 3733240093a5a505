"""The end of a call, whichever signal reports it first (socket closed, callbacks).

Every end signal asks for the call's summary; `summary_request` makes sure only the first one
enqueues it. When a relay socket closes, the engine's recorder ends its call after the call's
last writes, together with the other calls that ended meanwhile (`calls_ended`).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from calls.db import save_each
from calls.models import Call
from calls.summary_requests import summary_forget, summary_request, summary_requests

logger = logging.getLogger(__name__)

SOCKET = "socket"
ENDED_FIELDS = ["ended_at", "status", "duration_seconds", "metadata", "updated_at"]


def _mark_ended(call: Call, *, source: str, status: str) -> bool:
    if call.ended_at is not None or call.is_over:
        return False
    call.ended_at = timezone.now()
    call.status = status
    if call.started_at and call.duration_seconds is None:
        call.duration_seconds = int((call.ended_at - call.started_at).total_seconds())
    call.metadata["ended_by"] = source
    logger.info("call %s ended (%s)", call.call_sid, source)
    return True


def end_locked_call(call: Call, *, source: str, status: str) -> bool:
    """Mark a call (already locked with select_for_update) ended unless something already did;
    True when this signal was first. The caller saves nothing: this saves what it changes."""
    if not _mark_ended(call, source=source, status=status):
        return False
    call.save(update_fields=ENDED_FIELDS)
    return True


@transaction.atomic
def calls_ended(call_ids: list[int], *, source: str, status: str = Call.Status.COMPLETED) -> set[int]:
    """Mark the calls ended unless something already did, and ask for their summaries (once per
    call, however many signals arrive); the ids this signal ended first. One transaction of four
    queries for all of them: live calls end in bursts too."""
    calls = list(Call.objects.select_for_update().filter(pk__in=call_ids).order_by("pk"))
    ended = [call for call in calls if _mark_ended(call, source=source, status=status)]
    save_each(ended, ENDED_FIELDS)
    summary_requests(calls)
    return {call.pk for call in ended}


@transaction.atomic
def call_ended(*, call_id: int, source: str, status: str = Call.Status.COMPLETED) -> bool:
    """`calls_ended` for one call; True when this signal was first."""
    call = Call.objects.select_for_update().get(pk=call_id)
    first = end_locked_call(call, source=source, status=status)
    summary_request(call.pk)
    return first


def reopen_locked_call(call: Call) -> bool:
    """Undo an end that only our own socket reported, for a call Twilio says is still up (it is
    reconnecting after the socket dropped); True when the call was reopened. An end Twilio itself
    reported is final."""
    if not call.is_over or call.metadata.get("ended_by") != SOCKET:
        return False
    call.status = Call.Status.IN_PROGRESS
    call.ended_at = None
    call.duration_seconds = None
    call.metadata.pop("ended_by", None)
    summary_forget(call)
    call.save()
    logger.info("call %s reopened: Twilio reports it still in progress", call.call_sid)
    return True
