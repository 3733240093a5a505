"""Deliveries in a real Celery worker on the real Redis broker: retries wait out their countdown
in the worker, and the signed POSTs come from another process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from calls.summaries.writer import call_summarize
from calls.tests.conftest import (
    HoldingAnthropic,
    Worker,
    _test_database_worker_ready,
    wait_until,
    worker_start,
)
from outbound.models import WebhookDelivery
from outbound.signing import HEADER, verify
from voiceproject.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def webhook_worker(django_db_setup, tmp_path) -> Iterator[Worker]:
    """A worker of this test's own, on a queue of its own, with short retries: 3 attempts."""
    _test_database_worker_ready()
    queue = f"outbound-test-{uuid.uuid4().hex[:10]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    anthropic = HoldingAnthropic().start()  # unused here: worker_start wants one
    env = {"WEBHOOK_RETRY_BASE_SECONDS": "0.05", "WEBHOOK_MAX_ATTEMPTS": "3", "WEBHOOK_TIMEOUT_SECONDS": "2"}
    try:
        worker = worker_start(queue=queue, log=tmp_path / "worker.log", anthropic=anthropic, env=env)
        yield worker
        worker.stop()
    finally:
        anthropic.stop()
        celery_app.conf.task_default_queue = previous
        with celery_app.connection_for_write() as connection:
            bound = celery_app.amqp.queues[queue].bind(connection.default_channel)
            bound.declare()
            bound.delete()


def test_the_worker_retries_a_500_after_its_countdown_and_then_delivers(
    webhook_worker, receiver, endpoint, queued_call, settings
):
    settings.ANTHROPIC_API_KEY = ""  # the demo summary, in this process
    receiver.answers.extend([500, 502])

    call_summarize(queued_call.pk)  # autocommit: the delivery is published at once

    def delivered() -> WebhookDelivery | None:
        return WebhookDelivery.objects.filter(status=WebhookDelivery.Status.SUCCEEDED).first()

    delivery = wait_until(delivered, timeout=20)
    assert (delivery.attempts, delivery.last_status_code) == (3, 200)
    requests = receiver.wait_for(3)
    assert len(requests) == 3 and len({r.body for r in requests}) == 1
    assert all(verify(endpoint.secret, r.headers[HEADER], r.body) for r in requests)
    assert json.loads(requests[0].body)["id"] == delivery.pk
    assert "outbound.tasks.deliver_webhook" in webhook_worker.log_text()
