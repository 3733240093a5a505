from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from calls.models import Call

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("apply_retention", *args, stdout=out)
    return out.getvalue()


def test_with_retention_off_it_says_so_and_keeps_everything(make_call):
    make_call("CAold", days_old=400)
    assert run() == "CALL_RETENTION_DAYS is 0: calls are kept forever, nothing to do.\n"
    assert Call.objects.count() == 1


def test_a_dry_run_says_what_would_go_then_a_run_deletes_it(make_call, settings):
    settings.CALL_RETENTION_DAYS = 30
    make_call("CAold", days_old=31, turns=3)
    make_call("CArecent", days_old=2)
    out = run("--dry-run")
    assert out.startswith("1 calls (3 turns) created before ") and out.endswith(" UTC would be deleted.\n")
    assert Call.objects.count() == 2
    assert run().endswith(" UTC deleted.\n")
    assert list(Call.objects.values_list("call_sid", flat=True)) == ["CArecent"]


def test_days_and_mode_can_be_overridden_for_one_run(make_call):
    make_call("CAold", days_old=8)
    assert run("--days", "7", "--mode", "anonymise").startswith("1 calls (2 turns) created before ")
    assert Call.objects.get().anonymised_at is not None
