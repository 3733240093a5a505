"""The summary in the admin: the card on a call's page, the outcome filter, "Re-run summary"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from calls.models import Call

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:calls_call_changelist"


@pytest.fixture
def viewer(client):
    """A staff member who may only view calls."""
    user = User.objects.create_user("viewer", password="pw-for-tests", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_call"))
    client.force_login(user)
    return client


@pytest.fixture
def summarised(default_persona) -> Call:
    return Call.objects.create(
        call_sid="CA" + "4" * 32,
        persona=default_persona,
        from_number="+14155550111",
        status=Call.Status.COMPLETED,
        summary="The caller asked to move Tuesday's appointment.",
        summary_status=Call.SummaryStatus.DONE,
        summary_outcome=Call.Outcome.FOLLOW_UP_NEEDED,
        summary_data={
            "summary": "The caller asked to move Tuesday's appointment.",
            "caller_intent": "Reschedule an appointment",
            "outcome": "follow_up_needed",
            "action_items": ["Offer two slots on Thursday", "Text the new time"],
            "sentiment": "neutral",
            "model": "claude-haiku-4-5",
        },
    )


def rerun(client, *calls: Call):
    data = {"action": "rerun_summary", "_selected_action": [c.pk for c in calls], "index": 0}
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_the_call_page_shows_the_summary_card(viewer, summarised):
    html = viewer.get(reverse("admin:calls_call_change", args=[summarised.pk])).content.decode()
    assert "move Tuesday&#x27;s appointment" in html
    assert '<dd class="summary-intent">Reschedule an appointment</dd>' in html
    assert '<span class="pill summary-outcome">Follow-up needed</span>' in html
    assert '<dd class="summary-sentiment">Neutral</dd>' in html
    assert "<li>Offer two slots on Thursday</li><li>Text the new time</li>" in html


def test_a_call_without_a_summary_says_so(viewer, default_persona):
    call = Call.objects.create(call_sid="CA" + "3" * 32, persona=default_persona)
    html = viewer.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    assert "No summary yet (pending)." in html


def test_calls_filter_by_summary_outcome_and_status(viewer, summarised, default_persona):
    Call.objects.create(
        call_sid="CA" + "2" * 32,
        persona=default_persona,
        from_number="+14155550222",
        summary_status=Call.SummaryStatus.DONE,
        summary_outcome=Call.Outcome.RESOLVED,
    )
    html = viewer.get(reverse(CHANGELIST), {"summary_outcome__exact": "follow_up_needed"}).content.decode()
    assert "+14155550111" in html and "+14155550222" not in html
    html = viewer.get(reverse(CHANGELIST), {"summary_status__exact": "done"}).content.decode()
    assert "+14155550111" in html and "+14155550222" in html


@pytest.mark.parametrize("as_superuser", [False, True])
def test_staff_who_may_view_calls_can_rerun_a_summary(
    client, viewer, summarised, as_superuser, admin_user, django_capture_on_commit_callbacks
):
    if as_superuser:
        client.force_login(admin_user)
    with django_capture_on_commit_callbacks() as enqueued:
        response = rerun(client, summarised)
    assert response.status_code == 200 and "Re-running the summary of 1 call(s)." in response.content.decode()
    summarised.refresh_from_db()
    assert summarised.summary_status == Call.SummaryStatus.QUEUED
    assert summarised.summary == "" and summarised.summary_data == {} and summarised.summary_outcome == ""
    assert len(enqueued) == 1


def test_a_live_call_is_not_rerun(viewer, summarised, default_persona, django_capture_on_commit_callbacks):
    live = Call.objects.create(
        call_sid="CA" + "1" * 32, persona=default_persona, status=Call.Status.IN_PROGRESS
    )
    with django_capture_on_commit_callbacks() as enqueued:
        html = rerun(viewer, summarised, live).content.decode()
    assert "Skipped 1 call(s) still in progress" in html
    live.refresh_from_db()
    assert live.summary_status == Call.SummaryStatus.PENDING and len(enqueued) == 1


def test_the_call_list_offers_the_rerun_action(viewer, summarised):
    html = viewer.get(reverse(CHANGELIST)).content.decode()
    assert 'value="rerun_summary"' in html
    assert '<td class="field-summary_outcome">Follow-up needed</td>' in html
