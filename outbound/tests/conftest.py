"""Outbound webhook fixtures: the fake receiver, endpoints, a summarised call, eager Celery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from calls.models import Call, Turn
from outbound.models import WebhookEndpoint
from outbound.tests.receiver import FakeReceiver
from voiceproject.celery import app as celery_app


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    fake = FakeReceiver().start()
    yield fake
    fake.stop()


@pytest.fixture
def webhook_settings(settings):
    """Short timings: retries at once (eager Celery ignores countdowns anyway), three attempts."""
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    settings.ANTHROPIC_API_KEY = ""  # the demo summary: no model needed
    return settings


@pytest.fixture
def eager_tasks(webhook_settings) -> Iterator[None]:
    """Celery runs the tasks in this process, retries included."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def endpoint(db, receiver) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name="CRM", url=receiver.url)


@pytest.fixture
def queued_call(default_persona) -> Call:
    """An ended call whose summary is queued; the agent's last turn was cut off by the caller."""
    call = Call.objects.create(
        call_sid="CA" + "7" * 32,
        persona=default_persona,
        from_number="+14155550111",
        to_number="+14155550100",
        status=Call.Status.COMPLETED,
        duration_seconds=42,
        summary_status=Call.SummaryStatus.QUEUED,
    )
    Turn.objects.bulk_create(
        [
            Turn(call=call, sequence=0, role="assistant", text="Hello, Bright Smile Dental.",
                 generated_text="Hello, Bright Smile Dental."),
            Turn(call=call, sequence=1, role="user", text="I need to move my appointment."),
            Turn(call=call, sequence=2, role="assistant", text="Sure, we have Thursday", interrupted=True,
                 generated_text="Sure, we have Thursday at nine or Friday at two.",
                 tool_calls=[{"name": "end_call", "arguments": {}, "executed": False}]),
        ]
    )  # fmt: skip
    return call
