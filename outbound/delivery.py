"""One attempt at a delivery: claim it, POST it, record what happened, say when to try again.

The delivery row is the schedule: `next_attempt_at` says when it is due, and a claim (one
conditional UPDATE) moves it past the attempt's longest life, so a duplicate message or the
sweep can't send it twice at once. Delivery is at least once: a worker killed after the POST and
before the record sends it again; the payload's `id` lets receivers drop the duplicate.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from outbound import sending
from outbound.models import WebhookDelivery
from outbound.payload import payload_bytes

logger = logging.getLogger(__name__)

# A claim lasts longer than any attempt can (the task's hard time limit) and a little more.
CLAIM_SECONDS = 120.0
# A retry's message may arrive a moment before the time the attempt recorded (clocks, rounding).
EARLY_SECONDS = 1.0


@dataclass(frozen=True)
class Attempted:
    status: str  # WebhookDelivery.Status after the attempt, or "" when there was nothing to do
    retry_in: float | None = None  # seconds until the next attempt, when there is one


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter after `attempts` attempts: WEBHOOK_RETRY_BASE_SECONDS, then
    twice that, and so on, capped at WEBHOOK_RETRY_MAX_SECONDS; 75-100 % of it, so endpoints
    that failed together aren't all retried in the same second."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return min(settings.WEBHOOK_RETRY_MAX_SECONDS, base) * random.uniform(0.75, 1.0)


def _claim(delivery_id: int) -> WebhookDelivery | None:
    now = timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=EARLY_SECONDS))
    claimed = WebhookDelivery.objects.filter(
        due, pk=delivery_id, status=WebhookDelivery.Status.PENDING
    ).update(
        attempts=F("attempts") + 1,  # counted before the POST: a worker killed mid-attempt spent one
        last_attempt_at=now,
        next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
    )
    if not claimed:
        logger.info("webhook delivery %s: nothing to do (not pending, or not due)", delivery_id)
        return None
    return WebhookDelivery.objects.select_related("endpoint", "call").get(pk=delivery_id)


def delivery_attempt(delivery_id: int) -> Attempted:
    """Make one attempt at the delivery if it is pending and due, and record it."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return Attempted(status="")
    if not delivery.endpoint.is_active:
        sent = sending.Sent(status_code=None, error="The endpoint was deactivated: not sent.")
        return _record(delivery, sent, final=True)
    if delivery.call.anonymised_at is not None:  # the sweep clears its payload
        sent = sending.Sent(status_code=None, error="The call was anonymised: not sent.")
        return _record(delivery, sent, final=True)
    sent = sending.post(
        delivery.endpoint.url, payload_bytes(delivery.payload), secret=delivery.endpoint.secret
    )
    return _record(delivery, sent)


def _record(delivery: WebhookDelivery, sent: sending.Sent, *, final: bool = False) -> Attempted:
    now = timezone.now()
    fields: dict[str, object] = {
        "last_status_code": sent.status_code,
        "last_response": sent.response,
        "last_error": sent.error,
    }
    retry_in = None
    if sent.ok:
        status = WebhookDelivery.Status.SUCCEEDED
        fields.update(delivered_at=now, next_attempt_at=None)
    elif final or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        status = WebhookDelivery.Status.FAILED
        fields.update(next_attempt_at=None)
        logger.warning(
            "webhook delivery %s failed after %s attempts: %s", delivery.pk, delivery.attempts, sent.error
        )
    else:
        status = WebhookDelivery.Status.PENDING
        retry_in = retry_delay(delivery.attempts)
        fields.update(next_attempt_at=now + timedelta(seconds=retry_in))
        logger.info(
            "webhook delivery %s: attempt %s failed (%s), retried in %.0f s",
            delivery.pk,
            delivery.attempts,
            sent.error,
            retry_in,
        )
    # Only over our own claim: a newer one (a re-send's, meanwhile) counted another attempt, and wins.
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(status=status, **fields)
    return Attempted(status=status, retry_in=retry_in)
