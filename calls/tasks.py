"""Celery tasks of the calls app: thin wrappers that take ids; the work is in the services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import connections

from calls.privacy import retention
from calls.store.db import DATABASE_DOWN
from calls.summaries import sweep
from calls.summaries import writer as summaries

logger = logging.getLogger(__name__)

SUMMARY_MAX_RETRIES = 5
# Publishing a summary while Redis is down: a few quick tries (about 2 s), then the call is left
# "queued" for the sweep. Never longer: the publisher's one thread serves every ending call.
PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.4, "interval_max": 1.0}
# The database went away under the task (restart, failover, a killed connection).


@shared_task(
    bind=True,
    # Acknowledged after the run, and handed back if the worker process dies (SIGKILL, OOM): a
    # worker that dies mid-summary leaves the message for another one, which resumes the summary.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=SUMMARY_MAX_RETRIES,
    soft_time_limit=60,
    time_limit=90,
)
def summarize_call(self, call_id: int) -> str:
    """Summarise an ended call; retries with exponential backoff while the model or the database
    is unavailable."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        return summaries.call_summarize(call_id, resume=redelivered)
    except summaries.SummaryUnavailable as exc:
        if self.request.retries >= self.max_retries:
            attempts = self.request.retries + 1
            return summaries.summary_failed(call_id, reason=f"Gave up after {attempts} attempts: {exc}")
        summaries.summary_release(call_id)
        raise self.retry(exc=exc, countdown=summaries.retry_delay(self.request.retries)) from exc
    except DATABASE_DOWN as exc:
        # The connection is broken for good: the retry (and the release below) opens a new one.
        connections.close_all()
        if self.request.retries >= self.max_retries:
            logger.error(
                "summary of call %s: database unavailable, retries exhausted; the sweep retries it", call_id
            )
            raise
        logger.warning("summary of call %s: database error (%s), retried", call_id, exc)
        try:
            summaries.summary_release(call_id)
        except DATABASE_DOWN:
            connections.close_all()  # still down: the sweep frees the claim after its deadline
        raise self.retry(exc=exc, countdown=summaries.retry_delay(self.request.retries)) from exc


def summary_publish(call_id: int) -> None:
    """Put a summary on the broker, trying a few times at most (PUBLISH_RETRY_POLICY); raises
    the broker's error after that."""
    summarize_call.apply_async((call_id,), retry=True, retry_policy=PUBLISH_RETRY_POLICY)


@shared_task(ignore_result=True)
def summaries_sweep() -> int:
    """Queue again the summaries whose message or worker was lost (CELERY_BEAT_SCHEDULE); how many."""
    return len(sweep.summaries_sweep(enqueue=summary_publish))


@shared_task(soft_time_limit=3600, time_limit=3660)  # a first run may have years of calls to go through
def apply_call_retention() -> dict:
    """The daily retention run (CELERY_BEAT_SCHEDULE): old calls deleted or anonymised."""
    result = retention.retention_apply()
    return {"mode": result.mode, "calls": result.calls, "turns": result.turns}
