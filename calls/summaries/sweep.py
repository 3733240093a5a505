"""The sweep: summaries the database says are wanted but nobody is working on are queued again.

The call row is the durable record (a transactional outbox): the transaction that ends a call
marks its summary "queued", and every attempt refreshes `updated_at`. A summary still "queued"
long after that lost its message (the broker was down when it was published, or restarted
without persistence); one still "running" lost its worker (killed mid-summary). Nothing else
leaves a summary untouched that long: a live attempt is killed at the task's hard time limit,
and a retry's wait is shorter than the deadline too (settings.SUMMARY_STALE_AFTER_SECONDS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls.models import Call

logger = logging.getLogger(__name__)

# Per run: a long outage's backlog is worked off over a few runs instead of in one burst.
SWEEP_BATCH = 500


def summaries_sweep(enqueue: Callable[[int], object]) -> list[int]:
    """Queue again the summaries left "queued" or "running" past the deadline, passing each id
    to `enqueue` after the commit; the ids. Summaries asked for too long ago fail instead, with a
    reason staff can read (a call whose summary kills its worker must not loop for ever)."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.SUMMARY_STALE_AFTER_SECONDS)
    give_up_before = now - timedelta(seconds=settings.SUMMARY_GIVE_UP_AFTER_SECONDS)
    with transaction.atomic():
        # Under a row lock, re-read after locking: a worker claiming the row right now refreshes
        # updated_at, and its row is skipped rather than waited for (it is not stale).
        rows = list(
            Call.objects.select_for_update(skip_locked=True)
            .filter(
                summary_status__in=[Call.SummaryStatus.QUEUED, Call.SummaryStatus.RUNNING],
                updated_at__lt=stale_before,
            )
            .order_by("updated_at")
            .values_list("pk", "summary_status", "summary_requested_at")[:SWEEP_BATCH]
        )
        abandoned = [pk for pk, _, requested in rows if requested is not None and requested < give_up_before]
        requeued = [pk for pk, _, _ in rows if pk not in abandoned]
        if abandoned:
            hours = settings.SUMMARY_GIVE_UP_AFTER_SECONDS / 3600
            Call.objects.filter(pk__in=abandoned).update(
                summary_status=Call.SummaryStatus.FAILED,
                summary_error=f"Not summarised within {hours:g} hours of the request; use Re-run summary.",
                updated_at=now,
            )
        # A stale "running" claim becomes claimable again ("queued"); updated_at restarts the
        # deadline, so a call is queued again at most once per deadline however often this runs.
        Call.objects.filter(pk__in=requeued).update(summary_status=Call.SummaryStatus.QUEUED, updated_at=now)
    for pk, status, requested in rows:
        if pk in abandoned:
            logger.error("summary of call %s (%s since %s) given up: too old", pk, status, requested)
        else:
            logger.warning(
                "summary of call %s was left %s (requested %s): queued again", pk, status, requested
            )
    for pk in requeued:
        enqueue(pk)
    return requeued
