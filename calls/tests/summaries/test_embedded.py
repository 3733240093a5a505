"""The embedded run (no Redis, eager Celery): summaries are written in-process on ONE thread,
never one per call, and a backlog past the lane's bound is left to the sweep on that thread."""

from __future__ import annotations

import threading

import pytest

from calls.models import Call
from calls.summaries import requests as summary_requests
from calls.summaries.writer import DEMO_PREFIX
from calls.tests.conftest import call_ended, wait_until
from calls.tests.summaries.test_writer import make_call

pytestmark = pytest.mark.django_db(transaction=True)  # the lane's thread has its own connection


@pytest.fixture
def demo(settings, eager_celery):
    settings.ANTHROPIC_API_KEY = ""


@pytest.fixture
def runs(monkeypatch) -> list[tuple[int, str, int]]:
    """Each embedded run: (call id, thread name, summaries running at that moment)."""
    recorded: list[tuple[int, str, int]] = []
    running = [0]
    lock = threading.Lock()
    run_for_real = summary_requests._run_eagerly

    def run_eagerly(call_id: int) -> None:
        with lock:
            running[0] += 1
            recorded.append((call_id, threading.current_thread().name, running[0]))
        try:
            run_for_real(call_id)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(summary_requests, "_run_eagerly", run_eagerly)
    return recorded


def ended_calls(persona, count: int) -> list[Call]:
    calls = [
        make_call(
            persona,
            [("user", f"Question number {n}")],
            summary_status=Call.SummaryStatus.PENDING,
            status=Call.Status.IN_PROGRESS,
        )
        for n in range(count)
    ]
    for call in calls:
        assert call_ended(call_id=call.pk, source="socket")
    return calls


def summaries(calls: list[Call]) -> list[tuple[str, str]]:
    rows = Call.objects.filter(pk__in=[c.pk for c in calls]).order_by("pk")
    return list(rows.values_list("summary_status", "summary"))


def test_many_ending_calls_are_summarised_one_at_a_time_on_one_thread(demo, runs, default_persona):
    calls = ended_calls(default_persona, 12)
    wait_until(lambda: all(status == Call.SummaryStatus.DONE for status, _ in summaries(calls)))
    assert sorted(call_id for call_id, _, _ in runs) == [call.pk for call in calls]  # each once
    assert {thread for _, thread, _ in runs} == {"summary-embedded"}
    assert max(running for _, _, running in runs) == 1
    assert [thread.name for thread in threading.enumerate()].count("summary-embedded") == 1
    for n, (_, summary) in enumerate(summaries(calls)):
        assert summary.startswith(DEMO_PREFIX) and f"Question number {n}" in summary


def test_a_call_past_the_lanes_bound_stays_queued_and_its_sweep_writes_it(
    demo, runs, default_persona, settings, monkeypatch, caplog
):
    settings.SUMMARY_STALE_AFTER_SECONDS = 0.5
    monkeypatch.setattr(summary_requests._embedded, "maxsize", 1)
    monkeypatch.setattr(summary_requests._embedded, "every", 0.2)
    first_running, go_on = threading.Event(), threading.Event()
    run = summary_requests._run_eagerly

    def held_first(call_id: int) -> None:
        first_running.set()
        assert go_on.wait(10)
        run(call_id)

    monkeypatch.setattr(summary_requests, "_run_eagerly", held_first)
    [first] = ended_calls(default_persona, 1)
    assert first_running.wait(10)
    monkeypatch.setattr(summary_requests, "_run_eagerly", run)
    second, third = ended_calls(default_persona, 2)  # one waits in the lane; no room for the third
    assert summaries([third]) == [(Call.SummaryStatus.QUEUED, "")]
    refused = [r.getMessage() for r in caplog.records if "stays queued for the sweep" in r.getMessage()]
    assert refused == [
        f"summary of call {third.pk}: summary-embedded has 1 waiting; it stays queued for the sweep"
    ]
    go_on.set()

    wait_until(
        lambda: all(status == Call.SummaryStatus.DONE for status, _ in summaries([first, second, third]))
    )
    # The third ran once, after its deadline, by the lane's own sweep (the embedded run has no beat).
    assert [call_id for call_id, _, _ in runs] == [first.pk, second.pk, third.pk]
    assert {thread for _, thread, _ in runs} == {"summary-embedded"}
