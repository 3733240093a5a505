"""Nothing lost when the broker, a worker or the database fails mid-way (issue 14): the call row
says what is wanted, the sweep queues again what was lost, and the claim makes it run once."""

from __future__ import annotations

import time

import psutil
import pytest
from django.db import connection

from calls.models import Call, Turn
from calls.summaries import requests as summary_requests
from calls.summaries.sweep import summaries_sweep
from calls.summaries.writer import TOOL_NAME
from calls.tasks import summary_publish
from calls.tests.conftest import (
    WORKER_DATABASE_APP,
    HoldingAnthropic,
    call_ended,
    published_tasks,
    wait_until,
    worker_start,
)
from fakes.anthropic_server import FakeReply

pytestmark = pytest.mark.django_db(transaction=True)

TASK = "calls.tasks.summarize_call"
SUMMARY = {
    "summary": "The caller asked whether the clinic opens on Saturday.",
    "caller_intent": "Saturday opening",
    "outcome": "resolved",
    "action_items": [],
    "sentiment": "neutral",
}
ANSWER = FakeReply(tool_use={"name": TOOL_NAME, "input": SUMMARY})


def live_call(persona, n: int) -> Call:
    call = Call.objects.create(call_sid=f"CA{n:032d}", persona=persona, status=Call.Status.IN_PROGRESS)
    Turn.objects.create(call=call, sequence=0, role=Turn.Role.USER, text=f"This is caller number {n}.")
    return call


def statuses(calls: list[Call]) -> list[str]:
    return [call.summary_status for call in Call.objects.filter(pk__in=[c.pk for c in calls]).order_by("pk")]


def all_done(calls: list[Call]) -> bool:
    return statuses(calls) == [Call.SummaryStatus.DONE] * len(calls)


def requests_per_call(fake: HoldingAnthropic, calls: list[Call]) -> list[int]:
    contents = [request["messages"][0]["content"] for request in fake.requests]
    return [
        sum(f"caller number {call.call_sid[-2:].lstrip('0') or '0'}." in c for c in contents)
        for call in calls
    ]


def sweep_until_requeued(call_ids: set[int], *, timeout: float = 10.0) -> set[int]:
    """Run the sweep (beat's job) until it has queued all of these calls again."""
    requeued: set[int] = set()

    def swept() -> bool:
        requeued.update(summaries_sweep(enqueue=summary_publish))
        return call_ids <= requeued

    wait_until(swept, timeout=timeout, interval=0.2)
    return requeued


@pytest.fixture
def fake_model():
    fake = HoldingAnthropic(default=ANSWER).start()
    yield fake
    fake.stop()


@pytest.fixture
def short_deadlines(settings):
    settings.SUMMARY_STALE_AFTER_SECONDS = 0.5


def test_calls_ending_while_redis_is_down_are_published_once_it_is_back(
    private_broker, fake_model, default_persona, short_deadlines, celery_test_queue, tmp_path
):
    worker = worker_start(
        queue=celery_test_queue,
        log=tmp_path / "worker.log",
        anthropic=fake_model,
        env={"REDIS_URL": private_broker.url},
    )
    try:
        calls = [live_call(default_persona, n) for n in range(1, 5)]
        private_broker.stop()
        with published_tasks() as published:
            started = time.monotonic()
            for call in calls:
                assert call_ended(call_id=call.pk, source="socket")
            ending = time.monotonic() - started
            # The publisher tries once, off the calls' path, then holds the rest.
            assert summary_requests._publisher.wait_idle(timeout=30)
        assert ending < 1.0, f"ending 4 calls took {ending:.2f} s: the publisher blocked them"
        assert published == [] and fake_model.requests == []
        assert statuses(calls) == [Call.SummaryStatus.QUEUED] * 4  # the durable request
        assert list(summary_requests._held) == [call.pk for call in calls]

        private_broker.start()  # no sweep here: the publisher's own retry sends what it held
        wait_until(lambda: all_done(calls), timeout=30)
        assert not summary_requests._held
    finally:
        worker.stop()
    assert requests_per_call(fake_model, calls) == [1, 1, 1, 1]


def test_summaries_lost_with_the_broker_and_the_web_process_are_queued_again_by_the_sweep(
    private_broker, fake_model, default_persona, short_deadlines, celery_test_queue, tmp_path
):
    worker = worker_start(
        queue=celery_test_queue,
        log=tmp_path / "worker.log",
        anthropic=fake_model,
        env={"REDIS_URL": private_broker.url},
    )
    try:
        calls = [live_call(default_persona, n) for n in range(1, 5)]
        private_broker.stop()
        for call in calls:
            assert call_ended(call_id=call.pk, source="socket")
        assert summary_requests._publisher.wait_idle(timeout=30)
        summary_requests.held_forget()  # the web process restarted: only the database remembers

        private_broker.start()
        with published_tasks() as published:
            assert sweep_until_requeued({call.pk for call in calls}) == {call.pk for call in calls}
        assert published == [TASK] * 4
        wait_until(lambda: all_done(calls), timeout=30)
    finally:
        worker.stop()
    assert requests_per_call(fake_model, calls) == [1, 1, 1, 1]
    assert {call.summary for call in Call.objects.filter(pk__in=[c.pk for c in calls])} == {
        SUMMARY["summary"]
    }


def test_a_summary_whose_pool_process_is_killed_is_redelivered_and_written_once(
    private_broker, fake_model, default_persona, celery_test_queue, tmp_path
):
    worker = worker_start(
        queue=celery_test_queue,
        log=tmp_path / "worker.log",
        anthropic=fake_model,
        pool="prefork",
        env={"REDIS_URL": private_broker.url},
    )
    try:
        call = live_call(default_persona, 7)
        fake_model.hold_next(1)
        call_ended(call_id=call.pk, source="socket")
        fake_model.wait_holding(1)
        assert statuses([call]) == [Call.SummaryStatus.RUNNING]
        [child] = psutil.Process(worker.process.pid).children()
        child.kill()  # SIGKILL, mid-summary: no acknowledgement, no cleanup
        wait_until(lambda: all_done([call]), timeout=30)
    finally:
        worker.stop()
    # The message came back (reject_on_worker_lost), was taken as a redelivery, and resumed.
    assert len(fake_model.requests) == 2 and requests_per_call(fake_model, [call]) == [2]
    assert "WorkerLostError" in worker.log_text()
    call.refresh_from_db()
    assert call.summary == SUMMARY["summary"] and call.summary_error == ""


def test_a_summary_whose_whole_worker_is_killed_is_queued_again_by_the_sweep_for_the_next_worker(
    private_broker, fake_model, default_persona, short_deadlines, celery_test_queue, tmp_path
):
    log = tmp_path / "worker.log"
    env = {"REDIS_URL": private_broker.url}
    worker = worker_start(queue=celery_test_queue, log=log, anthropic=fake_model, env=env)
    call = live_call(default_persona, 8)
    fake_model.hold_next(1)
    call_ended(call_id=call.pk, source="socket")
    fake_model.wait_holding(1)
    worker.kill()  # the message stays unacknowledged in Redis, for the visibility timeout
    assert statuses([call]) == [Call.SummaryStatus.RUNNING]

    assert sweep_until_requeued({call.pk}) == {call.pk}
    assert statuses([call]) == [Call.SummaryStatus.QUEUED]
    worker = worker_start(queue=celery_test_queue, log=log, anthropic=fake_model, env=env)
    try:
        wait_until(lambda: all_done([call]), timeout=30)
    finally:
        worker.stop()
    assert requests_per_call(fake_model, [call]) == [2]  # the killed one, and the one stored
    call.refresh_from_db()
    assert call.summary == SUMMARY["summary"]


def test_a_live_summary_is_not_taken_over_by_the_sweep(fake_model, default_persona, settings):
    call = live_call(default_persona, 9)
    Call.objects.filter(pk=call.pk).update(summary_status=Call.SummaryStatus.RUNNING)
    queued = []
    assert summaries_sweep(enqueue=queued.append) == [] and queued == []  # before the deadline
    settings.SUMMARY_STALE_AFTER_SECONDS = 0
    assert summaries_sweep(enqueue=queued.append) == [call.pk] and queued == [call.pk]
    assert statuses([call]) == [Call.SummaryStatus.QUEUED]


def test_a_summary_asked_for_too_long_ago_fails_instead_of_looping(default_persona, settings):
    call = live_call(default_persona, 10)
    Call.objects.filter(pk=call.pk).update(
        summary_status=Call.SummaryStatus.RUNNING, summary_requested_at="2020-01-01T00:00:00Z"
    )
    settings.SUMMARY_STALE_AFTER_SECONDS = 0
    queued = []
    assert summaries_sweep(enqueue=queued.append) == [] and queued == []
    call.refresh_from_db()
    assert call.summary_status == Call.SummaryStatus.FAILED
    assert "Not summarised within 24 hours" in call.summary_error


def test_a_database_connection_killed_mid_summary_is_retried(celery_worker, default_persona):
    call = live_call(default_persona, 11)
    celery_worker.anthropic.reset(default=ANSWER)
    celery_worker.anthropic.hold_next(1)
    call_ended(call_id=call.pk, source="socket")
    celery_worker.anthropic.wait_holding(1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [WORKER_DATABASE_APP],
        )
        assert cursor.fetchall() == [(True,)]
    celery_worker.anthropic.release()
    wait_until(lambda: all_done([call]), timeout=20)
    assert requests_per_call(celery_worker.anthropic, [call]) == [2]
    assert f"summary of call {call.pk}: database error" in celery_worker.log_text()
    assert celery_worker.published == [TASK]
