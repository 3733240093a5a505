"""Deliveries due whose message was lost (the broker restarted, a retry failed to publish, a
worker died after taking it): found by their row, a while past due, and queued again. And the
payloads of anonymised calls' deliveries, cleared: a deleted call takes its deliveries with it
(CASCADE), but anonymisation keeps the call, and its payload holds the transcript and numbers."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from outbound.models import WebhookDelivery

BATCH = 500


def deliveries_overdue() -> list[int]:
    """Pending deliveries due longer ago than a sweep interval: a message on time would have
    claimed them by now (a claim moves next_attempt_at past the attempt)."""
    cutoff = timezone.now() - timedelta(seconds=settings.WEBHOOK_SWEEP_INTERVAL_SECONDS)
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lt=cutoff)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:BATCH]
    )


def payloads_scrub() -> int:
    """Clear what anonymised calls' deliveries kept of the caller; one not sent yet never will be.
    How many deliveries changed."""
    scrubbed = WebhookDelivery.objects.filter(call__anonymised_at__isnull=False).exclude(payload={})
    pending = scrubbed.filter(status=WebhookDelivery.Status.PENDING)
    pending.update(
        status=WebhookDelivery.Status.FAILED,
        next_attempt_at=None,
        last_error="The call was anonymised: not sent.",
    )
    return scrubbed.update(payload={}, last_response="")
