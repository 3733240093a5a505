"""Deliveries made: one per active endpoint when a call's summary is stored, and re-sends."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls.models import Call
from outbound import tasks
from outbound.models import WebhookDelivery, WebhookEndpoint
from outbound.payload import call_summarized_body, envelope

logger = logging.getLogger(__name__)


def on_call_summarized(sender: Any, *, call_id: int, **kwargs: Any) -> None:
    """The summary writer's signal: the deliveries are made once the summary is committed (at
    once in the worker's autocommit). robust: a failure here never fails the summary task."""
    transaction.on_commit(partial(deliveries_create, call_id), robust=True)


def deliveries_create(
    call_id: int, event: str = WebhookDelivery.Event.CALL_SUMMARIZED
) -> list[WebhookDelivery]:
    """One pending delivery of the call's event per active endpoint, each queued after commit.
    The rows are the durable request: if a message is lost, the sweep queues it again."""
    endpoints = list(WebhookEndpoint.objects.filter(is_active=True))
    call = Call.objects.select_related("persona").filter(pk=call_id).first()
    if not endpoints or call is None:
        return []
    body = call_summarized_body(call)
    with transaction.atomic():
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(endpoint=endpoint, call=call, event=event, next_attempt_at=timezone.now())
            for endpoint in endpoints
        )
        for delivery in deliveries:
            delivery.payload = envelope(
                event, delivery_id=delivery.pk, created=delivery.created_at, body=body
            )
        WebhookDelivery.objects.bulk_update(deliveries, ["payload"])
        _enqueue_on_commit(delivery.pk for delivery in deliveries)
    logger.info("call %s: %s webhook deliveries of %s queued", call_id, len(deliveries), event)
    return deliveries


def deliveries_resend(deliveries: Iterable[WebhookDelivery]) -> int:
    """Staff's "Re-send": each delivery pending and due now, queued for a new attempt with its
    stored payload (a fresh signature). Attempts keep counting: once past WEBHOOK_MAX_ATTEMPTS, a
    re-send is one attempt and no retries."""
    ids = [delivery.pk for delivery in deliveries]
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
        )
        _enqueue_on_commit(ids)
    return len(ids)


def _enqueue_on_commit(delivery_ids: Iterable[int]) -> None:
    for delivery_id in delivery_ids:
        # robust: a broker that's away must not undo the rows; the sweep queues them later.
        transaction.on_commit(partial(tasks.delivery_publish, delivery_id), robust=True)
