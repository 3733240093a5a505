"""Asking for a call's summary: once per ended call however many end signals arrive, or again on
a staff member's request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from functools import partial

from django.db import connections, transaction
from django.utils import timezone

from calls.models import Call
from calls.tasks import summarize_call

logger = logging.getLogger(__name__)

# Everything a previous summary left behind, cleared before it is produced again.
SUMMARY_CLEARED = {"summary": "", "summary_data": {}, "summary_outcome": "", "summary_error": ""}


def _enqueue_on_commit(call_id: int) -> None:
    # robust: a broker outage must not turn a Twilio callback into a 500 (and a retry storm); the
    # call then stays "queued" and "Re-run summary" in the admin enqueues it again.
    transaction.on_commit(partial(_enqueue, call_id), robust=True)


def _enqueue(call_id: int) -> None:
    if not summarize_call.app.conf.task_always_eager:
        summarize_call.delay(call_id)
        return
    # The embedded run has no worker: the task runs in this process, but beside the caller, never
    # inside it. The caller may be a live call's database thread, shared by every call, and a
    # summary waits seconds on the model.
    threading.Thread(target=_run_eagerly, args=(call_id,), name=f"summary:{call_id}", daemon=True).start()


def _run_eagerly(call_id: int) -> None:
    try:
        summarize_call.delay(call_id)
    finally:
        connections.close_all()


def summary_request(call_id: int) -> bool:
    """Enqueue the summary of an ended call unless some earlier signal already did; True when this
    one did. The conditional UPDATE is the guarantee: concurrent signals serialise on the row, and
    only the first finds it still pending."""
    now = timezone.now()
    claimed = Call.objects.filter(
        pk=call_id, summary_requested_at__isnull=True, summary_status=Call.SummaryStatus.PENDING
    ).update(summary_requested_at=now, summary_status=Call.SummaryStatus.QUEUED, updated_at=now)
    if claimed:
        _enqueue_on_commit(call_id)
        logger.info("summary of call %s requested", call_id)
    return bool(claimed)


def summary_requests(calls: list[Call]) -> list[int]:
    """`summary_request` for ended calls the caller has locked (select_for_update) in its
    transaction: one UPDATE for all; the ids enqueued."""
    pending = [
        call.pk
        for call in calls
        if call.summary_requested_at is None and call.summary_status == Call.SummaryStatus.PENDING
    ]
    if not pending:
        return []
    now = timezone.now()
    Call.objects.filter(pk__in=pending).update(
        summary_requested_at=now, summary_status=Call.SummaryStatus.QUEUED, updated_at=now
    )
    for call_id in pending:
        _enqueue_on_commit(call_id)
        logger.info("summary of call %s requested", call_id)
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
    now = timezone.now()
    ids = list(Call.objects.ended().filter(pk__in=list(call_ids)).values_list("pk", flat=True))
    Call.objects.filter(pk__in=ids).update(
        summary_requested_at=now, summary_status=Call.SummaryStatus.QUEUED, updated_at=now, **SUMMARY_CLEARED
    )
    for call_id in ids:
        _enqueue_on_commit(call_id)
    return len(ids)
