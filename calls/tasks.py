"""Celery tasks of the calls app: thin wrappers that take ids; the work is in the services."""

from __future__ import annotations

from celery import shared_task

from calls.summaries import writer as summaries

SUMMARY_MAX_RETRIES = 5


@shared_task(
    bind=True,
    acks_late=True,  # a worker that dies mid-summary leaves the message for another one
    max_retries=SUMMARY_MAX_RETRIES,
    soft_time_limit=60,
    time_limit=90,
)
def summarize_call(self, call_id: int) -> str:
    """Summarise an ended call; retries with exponential backoff while the model is unavailable."""
    try:
        return summaries.call_summarize(call_id)
    except summaries.SummaryUnavailable as exc:
        if self.request.retries >= self.max_retries:
            attempts = self.request.retries + 1
            return summaries.summary_failed(call_id, reason=f"Gave up after {attempts} attempts: {exc}")
        raise self.retry(exc=exc, countdown=summaries.retry_delay(self.request.retries)) from exc
