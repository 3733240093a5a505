from __future__ import annotations

import logging

import pytest
from django.conf import settings as django_settings

from calls.models import Call, Turn
from calls.privacy.anonymisation import TURN_PLACEHOLDER
from calls.privacy.retention import RetentionMode, retention_apply
from calls.tasks import apply_call_retention
from voiceproject.celery import app as celery_app

pytestmark = pytest.mark.django_db


def sids() -> list[str]:
    return list(Call.objects.order_by("call_sid").values_list("call_sid", flat=True))


def test_by_default_calls_are_kept_forever(make_call):
    make_call("CAold", days_old=4000)
    assert django_settings.CALL_RETENTION_DAYS == 0
    result = retention_apply()
    assert (result.cutoff, result.calls) == (None, 0)
    assert sids() == ["CAold"] and Turn.objects.count() == 2


def test_delete_removes_old_calls_and_their_turns_in_batches_and_only_once(make_call, caplog):
    caplog.set_level(logging.INFO, logger="calls.privacy.retention")
    for n in range(3):
        make_call(f"CAold{n}", days_old=31, turns=3)
    make_call("CArecent", days_old=29)
    result = retention_apply(days=30, mode="delete", batch_size=2)  # two batches: 2, then 1
    assert (result.calls, result.turns) == (3, 9)
    assert sids() == ["CArecent"]
    assert list(Turn.objects.values_list("text", flat=True)) == ["CArecent said 0", "CArecent said 1"]
    assert [r.getMessage() for r in caplog.records] == [
        "retention: deleted 3 calls (9 turns) older than 30 days"
    ]

    again = retention_apply(days=30, mode="delete")
    assert (again.calls, again.turns) == (0, 0) and sids() == ["CArecent"]
    assert len(caplog.records) == 1  # nothing done, nothing logged


def test_anonymise_strips_personal_data_and_keeps_the_shape_of_the_call(make_call):
    old = make_call(
        "CAold",
        days_old=91,
        turns=3,
        status=Call.Status.COMPLETED,
        duration_seconds=74,
        summary="Jane Doe wants a cleaning on Friday.",
        summary_data={"caller_intent": "Book a cleaning for Jane", "outcome": "resolved"},
        summary_outcome=Call.Outcome.RESOLVED,
        metadata={
            "customParameters": {"customer_name": "Jane Doe"},
            "handoff": {"reason": "Jane wants a human", "transfer_to": "+14155550111"},
            "errors": [{"at": "2026-01-01T00:00:00Z", "source": "model", "description": "said Jane"}],
            "ended_by": "socket",
            "language": "es-MX",
        },
    )
    Turn.objects.filter(call=old, sequence=1).update(
        generated_text="Jane Doe, 12 Main St", tool_calls=[{"n": 1}]
    )
    recent = make_call("CArecent", days_old=1, summary="Bob wants a refund.")

    result = retention_apply(days=90, mode=RetentionMode.ANONYMISE)
    assert (result.calls, result.turns) == (1, 3)

    old.refresh_from_db()
    assert (old.from_number, old.to_number, old.summary, old.summary_data) == ("", "", "", {})
    assert old.metadata == {
        "ended_by": "socket",
        "language": "es-MX",
        "errors": [{"at": "2026-01-01T00:00:00Z", "source": "model"}],
    }
    assert (old.status, old.duration_seconds, old.summary_outcome) == ("completed", 74, "resolved")
    assert old.anonymised_at is not None
    turns = list(old.turns.in_order().values_list("sequence", "role", "text", "generated_text", "tool_calls"))
    assert turns == [
        (0, "assistant", TURN_PLACEHOLDER, "", []),
        (1, "user", TURN_PLACEHOLDER, "", []),
        (2, "assistant", TURN_PLACEHOLDER, "", []),
    ]
    recent.refresh_from_db()
    assert (recent.from_number, recent.summary, recent.anonymised_at) == (
        "+14155550198",
        "Bob wants a refund.",
        None,
    )
    assert list(recent.turns.values_list("text", flat=True)) == ["CArecent said 0", "CArecent said 1"]

    stamped = old.anonymised_at
    assert retention_apply(days=90, mode="anonymise").calls == 0  # idempotent: passed by next time
    old.refresh_from_db()
    assert old.anonymised_at == stamped


def test_a_dry_run_counts_and_changes_nothing(make_call):
    make_call("CAold", days_old=10, turns=4)
    make_call("CArecent", days_old=1)
    result = retention_apply(days=7, mode="delete", dry_run=True)
    assert (result.calls, result.turns, result.dry_run) == (1, 4, True)
    assert sids() == ["CAold", "CArecent"] and Turn.objects.count() == 6


def test_the_daily_task_applies_the_settings_policy(make_call, settings):
    settings.CALL_RETENTION_DAYS = 30
    settings.CALL_RETENTION_MODE = "anonymise"
    make_call("CAold", days_old=45)
    assert apply_call_retention() == {"mode": "anonymise", "calls": 1, "turns": 2}
    assert Call.objects.get().from_number == ""


def test_beat_runs_the_retention_task_daily():
    entry = django_settings.CELERY_BEAT_SCHEDULE["calls-retention"]
    assert entry["task"] == apply_call_retention.name and entry["task"] in celery_app.tasks
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {30}
