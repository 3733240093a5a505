"""Celery tasks of the outbound app: thin wrappers that take ids; the work is in delivery.py."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import connections

from calls.store.db import DATABASE_DOWN
from calls.tasks import PUBLISH_RETRY_POLICY
from outbound import delivery, sweep

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    # As the summaries (calls/tasks.py): acknowledged after the run and handed back if the worker
    # dies, so a killed worker's delivery is attempted again (the claim expires first).
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the delivery counts its attempts (WEBHOOK_MAX_ATTEMPTS), across re-sends
    soft_time_limit=60,
    time_limit=90,
)
def deliver_webhook(self, delivery_id: int) -> str:
    """One attempt at a webhook delivery; retried with backoff until it succeeds or runs out of
    attempts."""
    try:
        attempted = delivery.delivery_attempt(delivery_id)
    except DATABASE_DOWN as exc:
        # The row says nothing new: the retry (or the sweep, once the claim expires) tries again.
        connections.close_all()
        logger.warning("webhook delivery %s: database error (%s), retried", delivery_id, exc)
        raise self.retry(exc=exc, countdown=delivery.retry_delay(self.request.retries + 1)) from exc
    if attempted.retry_in is not None:
        # A retry that fails to publish leaves the row due: the sweep queues it again.
        raise self.retry(countdown=attempted.retry_in)
    return attempted.status


def delivery_publish(delivery_id: int) -> None:
    """Put a delivery on the broker, trying a few times at most; raises the broker's error after."""
    deliver_webhook.apply_async((delivery_id,), retry=True, retry_policy=PUBLISH_RETRY_POLICY)


@shared_task(ignore_result=True)
def deliveries_sweep() -> int:
    """Queue again the deliveries whose message was lost, and clear anonymised calls' payloads
    (CELERY_BEAT_SCHEDULE); how many were queued."""
    if scrubbed := sweep.payloads_scrub():
        logger.info("webhook deliveries: cleared the payloads of %s anonymised calls' deliveries", scrubbed)
    ids = sweep.deliveries_overdue()
    for delivery_id in ids:
        delivery_publish(delivery_id)
    return len(ids)
