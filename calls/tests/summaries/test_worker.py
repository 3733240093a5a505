"""End signals to stored summary, through a real Celery worker, Redis and the fake Anthropic API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from calls.models import Call, Turn
from calls.summaries.writer import TOOL_NAME
from calls.tasks import SUMMARY_MAX_RETRIES
from calls.tests.conftest import call_ended, wait_until
from calls.webhooks.call_status import StatusEvent, call_status_record
from fakes.anthropic_server import FakeReply

pytestmark = pytest.mark.django_db(transaction=True)

SID = "CA" + "7" * 32
TASK = "calls.tasks.summarize_call"
SUMMARY = {
    "summary": "The caller asked about Saturday opening hours and was told nine to noon.",
    "caller_intent": "Opening hours on Saturday",
    "outcome": "resolved",
    "action_items": [],
    "sentiment": "positive",
}
OVERLOADED = FakeReply(status=529, error_type="overloaded_error")


@pytest.fixture
def call(default_persona) -> Call:
    call = Call.objects.create(call_sid=SID, persona=default_persona, status=Call.Status.IN_PROGRESS)
    Turn.objects.create(call=call, sequence=0, role=Turn.Role.ASSISTANT, text="Hello, Harbor Street Dental.")
    Turn.objects.create(call=call, sequence=1, role=Turn.Role.USER, text="Are you open on Saturday?")
    Turn.objects.create(call=call, sequence=2, role=Turn.Role.ASSISTANT, text="Yes, from nine until noon.")
    return call


def summary_settled(call: Call) -> Call | None:
    call.refresh_from_db()
    return call if call.summary_status in (Call.SummaryStatus.DONE, Call.SummaryStatus.FAILED) else None


def test_three_end_signals_and_their_duplicates_make_exactly_one_summary(celery_worker, call, twilio_post):
    celery_worker.anthropic.queue(FakeReply(tool_use={"name": TOOL_NAME, "input": SUMMARY}))

    def concurrently(signal: int) -> None:
        try:
            if signal % 2:
                call_ended(call_id=call.pk, source="socket")
            else:
                call_status_record(
                    StatusEvent(call_sid=SID, call_status="completed", sequence=3, duration=33)
                )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(concurrently, range(8)))
    for _ in range(2):
        assert call_ended(call_id=call.pk, source="socket") is False
        params = {"CallSid": SID, "CallStatus": "completed", "SessionStatus": "completed"}
        assert twilio_post("/twilio/relay-action/", params).status_code == 200
        params = {"CallSid": SID, "CallStatus": "completed", "SequenceNumber": "3", "CallDuration": "33"}
        assert twilio_post("/twilio/status/", params).status_code == 200

    call = wait_until(lambda: summary_settled(call))
    assert call.summary_status == Call.SummaryStatus.DONE, call.summary_error
    assert call.summary == SUMMARY["summary"] and call.summary_outcome == Call.Outcome.RESOLVED
    assert call.duration_seconds == 33
    assert celery_worker.published.count(TASK) == 1
    [request] = celery_worker.anthropic.requests
    assert "Caller: Are you open on Saturday?" in request["messages"][0]["content"]


def test_an_overloaded_model_is_retried_with_backoff_until_it_answers(celery_worker, call):
    celery_worker.anthropic.queue(
        OVERLOADED, OVERLOADED, FakeReply(tool_use={"name": TOOL_NAME, "input": SUMMARY})
    )
    call_ended(call_id=call.pk, source="socket")
    call = wait_until(lambda: summary_settled(call))
    assert call.summary_status == Call.SummaryStatus.DONE, call.summary_error
    assert call.summary_data["caller_intent"] == SUMMARY["caller_intent"]
    assert len(celery_worker.anthropic.requests) == 3


def test_a_permanent_error_fails_at_once_with_the_reason(celery_worker, call):
    celery_worker.anthropic.queue(FakeReply(status=400, error_type="invalid_request_error"))
    call_ended(call_id=call.pk, source="socket")
    call = wait_until(lambda: summary_settled(call))
    assert call.summary_status == Call.SummaryStatus.FAILED
    assert "BadRequestError" in call.summary_error and "400" in call.summary_error
    assert len(celery_worker.anthropic.requests) == 1


def test_a_model_that_stays_overloaded_fails_after_the_last_retry(celery_worker, call):
    celery_worker.anthropic.reset(default=OVERLOADED)
    call_ended(call_id=call.pk, source="socket")
    call = wait_until(lambda: summary_settled(call))
    assert call.summary_status == Call.SummaryStatus.FAILED
    assert call.summary_error.startswith(f"Gave up after {SUMMARY_MAX_RETRIES + 1} attempts")
    assert "OverloadedError" in call.summary_error
    assert len(celery_worker.anthropic.requests) == SUMMARY_MAX_RETRIES + 1
