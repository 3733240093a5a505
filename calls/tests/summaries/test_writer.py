"""The summary service against the fake Anthropic server, in-process (the worker tests run it
in a real Celery worker)."""

from __future__ import annotations

import threading
from typing import get_args

import pytest

from agents.models import Persona
from calls.models import Call, Turn
from calls.summaries import requests as summary_requests
from calls.summaries import writer as summaries
from calls.summaries.writer import DEMO_PREFIX, TOOL_NAME, CallSummary, call_summarize
from calls.tests.conftest import call_ended
from fakes.anthropic_server import FakeReply

pytestmark = pytest.mark.django_db

GOOD_SUMMARY = {
    "summary": "A parent booked a Saturday check-up for their son.",
    "caller_intent": "Book a check-up",
    "outcome": "follow_up_needed",
    "action_items": ["Call back to confirm Saturday at nine."],
    "sentiment": "positive",
}


def summary_reply(data: dict | None = None) -> FakeReply:
    return FakeReply(tool_use={"name": TOOL_NAME, "input": data or GOOD_SUMMARY})


def make_call(persona, turns: list[tuple[str, str]], **fields) -> Call:
    fields = {"status": Call.Status.COMPLETED, "summary_status": Call.SummaryStatus.QUEUED, **fields}
    call = Call.objects.create(call_sid=f"CA{Call.objects.count() + 1:032d}", persona=persona, **fields)
    Turn.objects.bulk_create(
        Turn(call=call, sequence=n, role=role, text=text) for n, (role, text) in enumerate(turns)
    )
    return call


@pytest.fixture
def call(default_persona) -> Call:
    return make_call(
        default_persona,
        [("assistant", "Hello, how can I help?"), ("user", "I'd like to book a check-up."), ("user", "")],
    )


def test_the_outcome_choices_match_the_schema():
    assert set(get_args(summaries.Outcome)) == set(Call.Outcome.values)


def test_a_summary_is_a_forced_tool_call_on_the_heard_transcript_with_the_personas_prompt(
    fake_anthropic, default_persona
):
    default_persona.summary_prompt = "Summarise for the dental front desk."
    default_persona.save()
    call = make_call(default_persona, [("assistant", "Hello"), ("user", "Saturday please")])
    Turn.objects.create(
        call=call,
        sequence=2,
        role=Turn.Role.ASSISTANT,
        text="We open at nine",
        generated_text="We open at nine and close at noon.",
        interrupted=True,
    )
    fake_anthropic.queue(summary_reply())

    assert call_summarize(call.pk) == Call.SummaryStatus.DONE

    [request] = fake_anthropic.requests
    assert request["system"] == "Summarise for the dental front desk."
    assert request["model"] == default_persona.llm_model and not request.get("stream")
    assert request["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    [tool] = request["tools"]
    assert tool["input_schema"]["required"] == list(CallSummary.model_fields)
    transcript = request["messages"][0]["content"]
    assert transcript.index("Agent: Hello") < transcript.index("Caller: Saturday please")
    assert "We open at nine [cut off by the caller]" in transcript and "close at noon" not in transcript
    call.refresh_from_db()
    assert call.summary == GOOD_SUMMARY["summary"] and call.summary_outcome == Call.Outcome.FOLLOW_UP_NEEDED
    assert call.summary_data == {**GOOD_SUMMARY, "model": default_persona.llm_model}
    assert call.summary_error == ""


def test_the_built_in_prompt_is_used_when_the_persona_has_none(fake_anthropic, call):
    Persona.objects.filter(pk=call.persona_id).update(summary_prompt="")
    fake_anthropic.queue(summary_reply())
    call_summarize(call.pk)
    assert fake_anthropic.requests[0]["system"] == summaries.DEFAULT_SUMMARY_PROMPT


def test_a_call_without_caller_speech_is_skipped_without_asking_the_model(fake_anthropic, default_persona):
    call = make_call(default_persona, [("assistant", "Hello, how can I help?"), ("user", "  ")])
    assert call_summarize(call.pk) == Call.SummaryStatus.SKIPPED
    call.refresh_from_db()
    assert call.summary_status == Call.SummaryStatus.SKIPPED and fake_anthropic.requests == []


@pytest.mark.parametrize(
    "reply, reason",
    [
        (summary_reply({**GOOD_SUMMARY, "outcome": "sort of"}), "does not fit the schema"),
        (summary_reply({"summary": "Only this"}), "does not fit the schema"),
        (FakeReply(tokens=["Here is a summary in prose."]), f"did not call {TOOL_NAME}"),
        (FakeReply(status=400, error_type="invalid_request_error"), "BadRequestError"),
    ],
)
def test_answers_that_retrying_cannot_fix_fail_with_the_reason(fake_anthropic, call, reply, reason):
    fake_anthropic.queue(reply)
    assert call_summarize(call.pk) == Call.SummaryStatus.FAILED
    call.refresh_from_db()
    assert reason in call.summary_error and call.summary == "" and call.summary_outcome == ""


@pytest.mark.parametrize(
    "status, error_type", [(529, "overloaded_error"), (429, "rate_limit_error"), (500, "api_error")]
)
def test_a_busy_or_broken_model_is_reported_for_a_retry(fake_anthropic, call, status, error_type):
    fake_anthropic.queue(FakeReply(status=status, error_type=error_type))
    with pytest.raises(summaries.SummaryUnavailable):
        call_summarize(call.pk)
    call.refresh_from_db()
    assert call.summary_status == Call.SummaryStatus.RUNNING  # the retry picks it up


def test_an_unreachable_model_is_reported_for_a_retry(settings, call):
    settings.ANTHROPIC_API_KEY = "test-anthropic-key"
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(summaries.SummaryUnavailable, match="APIConnectionError"):
        call_summarize(call.pk)


def test_a_summary_not_queued_is_left_alone(fake_anthropic, call):
    states = (
        Call.SummaryStatus.PENDING,
        Call.SummaryStatus.RUNNING,
        Call.SummaryStatus.DONE,
        Call.SummaryStatus.FAILED,
    )
    for state in states:  # running: someone else's run, not to be done twice
        Call.objects.filter(pk=call.pk).update(summary_status=state)
        assert call_summarize(call.pk) == ""
    assert fake_anthropic.requests == []


def test_the_retry_delay_grows_exponentially_and_is_capped(settings):
    settings.SUMMARY_RETRY_BASE_SECONDS = 10
    delays = [summaries.retry_delay(n) for n in range(8)]
    assert 7.5 <= delays[0] <= 10 and 15 <= delays[1] <= 20 and 30 <= delays[2] <= 40
    assert max(delays) <= summaries.MAX_RETRY_DELAY_SECONDS


@pytest.mark.django_db(transaction=True)  # the summary's thread has its own connection
def test_without_an_api_key_the_ended_call_gets_a_labelled_demo_summary(
    settings, eager_celery, default_persona, django_capture_on_commit_callbacks, monkeypatch
):
    settings.ANTHROPIC_API_KEY = ""
    call = make_call(
        default_persona,
        [("assistant", "Hello"), ("user", "Do you open on Saturdays?"), ("user", "Thanks")],
        summary_status=Call.SummaryStatus.PENDING,
        status=Call.Status.IN_PROGRESS,
    )
    ran_in, done = [], threading.Event()

    def run_eagerly(call_id: int) -> None:
        ran_in.append(threading.current_thread().name)
        try:
            run_eagerly_for_real(call_id)
        finally:
            done.set()

    run_eagerly_for_real = summary_requests._run_eagerly
    monkeypatch.setattr(summary_requests, "_run_eagerly", run_eagerly)
    with django_capture_on_commit_callbacks(execute=True):
        assert call_ended(call_id=call.pk, source="socket")
    assert done.wait(10)
    # Beside the caller, not inside it: the socket's database thread must not wait on a summary.
    assert ran_in == ["summary-embedded"]
    call.refresh_from_db()
    assert call.summary_status == Call.SummaryStatus.DONE
    assert call.summary.startswith(DEMO_PREFIX) and "Do you open on Saturdays?" in call.summary
    assert call.summary_outcome == Call.Outcome.FOLLOW_UP_NEEDED
    assert call.summary_data["model"] == "demo" and call.summary_data["action_items"]
