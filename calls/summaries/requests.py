"""Asking for a call's summary: once per ended call however many end signals arrive, or again on
a staff member's request."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from calls.models import Call
from calls.summaries.lane import SummaryLane
from calls.summaries.sweep import summaries_sweep
from calls.tasks import summarize_call, summary_publish

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
        # robust: a failure handing it over must not turn a Twilio callback into a 500. The row
        # committed as "queued" is the durable request: whatever happens to the message, the
        # sweep queues it again (calls/summaries/sweep.py).
        transaction.on_commit(partial(_enqueue, call_id), robust=True)
        logger.info("summary of call %s requested", call_id)


def _publish(call_id: int) -> None:
    """Publish one summary; while the broker is known to be away, hold it for `_publish_held`
    instead of spending seconds of retries on each (a backlog would build behind them)."""
    global _broker_down
    if not _broker_down:
        try:
            summary_publish(call_id)
            return
        except Exception as exc:
            _broker_down = True
            logger.error(
                "summaries not queued, the broker is unreachable (%s: %s): they are held and "
                "published once it is back (the sweep queues any that are not)",
                type(exc).__name__,
                exc,
            )
    if len(_held) < PUBLISH_BACKLOG:
        _held[call_id] = None
    else:
        logger.warning(
            "summary of call %s: %s held already; it stays queued for the sweep", call_id, len(_held)
        )


def _publish_held() -> None:
    """Every PUBLISH_RETRY_SECONDS on the publisher's thread: once one held summary goes out, the
    broker is back, and the rest follow at once."""
    global _broker_down
    while _held:
        call_id = next(iter(_held))
        try:
            summary_publish(call_id)
        except Exception:
            return  # still away
        del _held[call_id]
        if _broker_down:
            _broker_down = False
            logger.warning("the broker is reachable again: publishing %s held summaries", len(_held) + 1)


def held_forget() -> None:
    """Drop the summaries held for the broker, as a restart of this process does (the sweep
    queues them again from the database)."""
    global _broker_down
    _held.clear()
    _broker_down = False


def _run_eagerly(call_id: int) -> None:
    try:
        summarize_call.delay(call_id)
    finally:
        connections.close_all()  # the lane may sleep for minutes: no idle connection held


def _sweep_eagerly() -> None:
    try:
        summaries_sweep(enqueue=_embedded.put)
    finally:
        connections.close_all()


# Publishing is a network round trip (seconds of retries while Redis is away), and the committing
# thread may be the database thread every live call shares: one thread of its own publishes. While
# the broker is away it holds what it could not publish and tries again every
# PUBLISH_RETRY_SECONDS, so summaries go out seconds after the broker returns; a backlog past
# PUBLISH_BACKLOG (a long outage) is left to the sweep rather than held in memory.
PUBLISH_BACKLOG = 1000
PUBLISH_RETRY_SECONDS = 5.0
_held: dict[int, None] = {}  # call ids not published while the broker was away, oldest first
_broker_down = False
_publisher = SummaryLane(
    "summary-publish",
    lambda call_id: _publish(call_id),
    maxsize=PUBLISH_BACKLOG,
    periodic=lambda: _publish_held(),
    every=PUBLISH_RETRY_SECONDS,
)

# The embedded run has no worker and no beat: the task runs in this process, on one thread beside
# the live calls (a summary waits seconds on the model), which also sweeps, when it starts and
# every SUMMARY_SWEEP_INTERVAL_SECONDS. More than EMBEDDED_BACKLOG waiting: left to that sweep.
EMBEDDED_BACKLOG = 100
_embedded = SummaryLane(
    "summary-embedded",
    lambda call_id: _run_eagerly(call_id),
    maxsize=EMBEDDED_BACKLOG,
    periodic=lambda: _sweep_eagerly(),
    every=settings.SUMMARY_SWEEP_INTERVAL_SECONDS,
)


def _enqueue(call_id: int) -> None:
    lane = _embedded if summarize_call.app.conf.task_always_eager else _publisher
    if not lane.put(call_id):
        logger.warning(
            "summary of call %s: %s has %s waiting; it stays queued for the sweep",
            call_id,
            lane.name,
            lane.maxsize,
        )


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
