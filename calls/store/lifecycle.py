"""The end of a call, whichever signal reports it first (socket closed, callbacks).

Every end signal asks for the call's summary; `summary_requests` makes sure only the first one
enqueues it. Callbacks end the call they hold locked (`end_locked_call`). When a relay socket
closes, the engine's recorder ends its call after the call's last writes, together with the
other calls that ended meanwhile (`calls_ended`), unless Twilio has moved the call on to another
session since: the socket's end can come after `/twilio/relay-action/` answered a reconnect or
a transfer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone

from calls.models import Call
from calls.store.db import save_each
from calls.summaries.requests import summary_forget, summary_requests

logger = logging.getLogger(__name__)

SOCKET = "socket"
ENDED_FIELDS = ["ended_at", "status", "duration_seconds", "metadata", "updated_at"]


def _mark_ended(call: Call, *, source: str) -> bool:
    if call.ended_at is not None or call.is_over:
        return False
    call.ended_at = timezone.now()
    call.status = Call.Status.COMPLETED
    if call.started_at and call.duration_seconds is None:
        call.duration_seconds = int((call.ended_at - call.started_at).total_seconds())
    call.metadata["ended_by"] = source
    logger.info("call %s ended (%s)", call.call_sid, source)
    return True


def end_locked_call(call: Call, *, source: str) -> bool:
    """Mark a call (already locked with select_for_update) ended unless something already did,
    and ask for its summary (once per call, however many signals arrive); True when this signal
    was first. The caller saves nothing: this saves what it changes."""
    first = _mark_ended(call, source=source)
    if first:
        call.save(update_fields=ENDED_FIELDS)
    summary_requests([call])
    return first


@transaction.atomic
def calls_ended(call_ids: list[int], *, source: str, sessions: Mapping[int, str] | None = None) -> set[int]:
    """`end_locked_call` for many calls in one transaction of four queries (live calls end in
    bursts too); the ids this signal ended first. `sessions`, for sockets' ends, holds the relay
    session each call's socket carried: a call whose session has changed since (a reconnect's new
    one, or none while Twilio reconnects or transfers it) is not ended by it."""
    calls = list(Call.objects.select_for_update().filter(pk__in=call_ids).order_by("pk"))
    if sessions is not None:
        for call in calls:
            if call.session_id != sessions.get(call.pk):
                logger.info(
                    "call %s: end of relay session %r ignored: the call moved on",
                    call.call_sid,
                    sessions.get(call.pk),
                )
        calls = [call for call in calls if call.session_id == sessions.get(call.pk)]
    ended = [call for call in calls if _mark_ended(call, source=source)]
    save_each(ended, ENDED_FIELDS)
    summary_requests(calls)
    return {call.pk for call in ended}


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
