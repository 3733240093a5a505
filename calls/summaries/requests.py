"""Asking for a call's summary: once per ended call however many end signals arrive, or again on
a staff member's request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from django.db import connections, transaction
from django.utils import timezone

from calls.models import Call
from calls.tasks import summarize_call

logger = logging.getLogger(__name__)

# Everything a previous summary left behind, cleared before it is produced again.
SUMMARY_CLEARED = {"summary": "", "summary_data": {}, "summary_outcome": "", "summary_error": ""}


def _queue(call_ids: list[int], **fields: object) -> None:
    """Mark the summaries queued and enqueue them once the transaction commits."""
    now = timezone.now()
    Call.objects.filter(pk__in=call_ids).update(
        summary_requested_at=now, summary_status=Call.SummaryStatus.QUEUED, updated_at=now, **fields
    )
    for call_id in call_ids:
        # robust: a failure handing it to the publisher must not turn a Twilio callback into a 500
        # (the publisher logs its own broker errors); the call then stays "queued", and "Re-run
        # summary" in the admin enqueues it again.
        transaction.on_commit(partial(_enqueue, call_id), robust=True)
        logger.info("summary of call %s requested", call_id)


# Publishing to the broker is a network round trip (seconds of retries while Redis is away), and
# the committing thread may be the database thread every live call shares: it publishes from here.
_publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="summary-publish")


def _enqueue(call_id: int) -> None:
    if not summarize_call.app.conf.task_always_eager:
        _publisher.submit(_publish, call_id)
        return
    # The embedded run has no worker: the task runs in this process, beside the caller (as
    # above), in a thread of its own since a summary waits seconds on the model.
    threading.Thread(target=_run_eagerly, args=(call_id,), name=f"summary:{call_id}", daemon=True).start()


def _publish(call_id: int) -> None:
    try:
        summarize_call.delay(call_id)
    except Exception:
        logger.exception("summary of call %s could not be queued; Re-run summary queues it again", call_id)


def _run_eagerly(call_id: int) -> None:
    try:
        summarize_call.delay(call_id)
    finally:
        connections.close_all()


def summary_requests(calls: list[Call]) -> list[int]:
    """Enqueue the summaries of these ended calls unless some earlier signal already did; the ids
    enqueued. The caller holds their rows locked (select_for_update) in its transaction and read
    them after locking: concurrent end signals serialise on the rows, and only the first finds a
    summary still pending."""
    pending = [
        call.pk
        for call in calls
        if call.summary_requested_at is None and call.summary_status == Call.SummaryStatus.PENDING
    ]
    if pending:
        _queue(pending)
    return pending


def summary_forget(call: Call) -> None:
    """A call that turned out not to be over (it reconnected): its summary is asked for again
    when it really ends. A task already queued finds it pending and does nothing."""
    call.summary_requested_at = None
    call.summary_status = Call.SummaryStatus.PENDING
    for field, value in SUMMARY_CLEARED.items():
        setattr(call, field, value)


@transaction.atomic
def summary_rerun(call_ids: Iterable[int]) -> int:
    """Reset and enqueue the summaries of these calls, ended ones only (a live call's summary is
    asked for when it ends); the number enqueued."""
    ids = list(Call.objects.ended().filter(pk__in=list(call_ids)).values_list("pk", flat=True))
    _queue(ids, **SUMMARY_CLEARED)
    return len(ids)
