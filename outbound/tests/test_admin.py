"""Endpoints and deliveries in the admin: the secret shown once, rotation, the deliveries' record,
"Re-send"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from calls.models import Call
from outbound.models import WebhookDelivery, WebhookEndpoint
from outbound.services import deliveries_create
from outbound.signing import HEADER, verify

pytestmark = pytest.mark.django_db

ENDPOINTS = "admin:outbound_webhookendpoint_changelist"
DELIVERIES = "admin:outbound_webhookdelivery_changelist"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("ops", password="pw-for-tests", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="outbound").exclude(
            codename="resend_webhookdelivery"
        )
    )
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def delivered(
    receiver, endpoint, queued_call, eager_tasks, django_capture_on_commit_callbacks
) -> WebhookDelivery:
    """A delivery that failed: the receiver answered 500 three times."""
    receiver.default = 500
    Call.objects.filter(pk=queued_call.pk).update(summary_data={"summary": "Moved to Thursday."})
    with django_capture_on_commit_callbacks(execute=True):
        [delivery] = deliveries_create(queued_call.pk)
    receiver.wait_for(3)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    return delivery


def test_a_new_endpoint_shows_its_secret_once_then_only_masked(staff, settings):
    settings.DEBUG = False
    response = staff.post(
        reverse("admin:outbound_webhookendpoint_add"),
        {"name": "CRM", "url": "https://crm.example.com/hooks", "is_active": "on"},
    )

    endpoint = WebhookEndpoint.objects.get()
    html = response.content.decode()
    assert response.status_code == 200 and f'<code class="webhook-secret">{endpoint.secret}</code>' in html
    assert "not shown again" in html
    assert "webhook-secret" not in "".join(f"{k}={v.value}" for k, v in response.cookies.items())
    for page in [reverse(ENDPOINTS), reverse("admin:outbound_webhookendpoint_change", args=[endpoint.pk])]:
        html = staff.get(page).content.decode()
        assert endpoint.secret not in html and f"whsec_…{endpoint.secret[-4:]}" in html


def test_a_non_https_url_is_refused_by_the_form(staff, settings):
    settings.DEBUG = False
    response = staff.post(
        reverse("admin:outbound_webhookendpoint_add"), {"name": "CRM", "url": "http://crm.example.com/hooks"}
    )

    assert response.status_code == 200 and "must use https" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_rotating_a_secret_shows_the_new_one_once(staff):
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    old = endpoint.secret

    response = staff.post(reverse(ENDPOINTS), {"action": "rotate_secret", "_selected_action": [endpoint.pk]})

    endpoint.refresh_from_db()
    assert endpoint.secret != old
    html = response.content.decode()
    assert f'<code class="webhook-secret">{endpoint.secret}</code>' in html and old not in html


def test_deliveries_are_listed_filtered_and_shown_with_payload_and_response(staff, delivered):
    listed = staff.get(
        reverse(DELIVERIES), {"status__exact": "failed", "endpoint__id__exact": delivered.endpoint_id}
    )
    assert listed.status_code == 200 and list(listed.context["cl"].result_list) == [delivered]
    assert (
        list(staff.get(reverse(DELIVERIES), {"status__exact": "succeeded"}).context["cl"].result_list) == []
    )

    html = staff.get(reverse("admin:outbound_webhookdelivery_change", args=[delivered.pk])).content.decode()
    assert "Moved to Thursday." in html and "Sure, we have Thursday at nine or Friday at two." in html
    assert "status 500" in html and "HTTP 500" in html
    assert 'name="_save"' not in html  # a read-only record


def test_re_send_makes_a_new_signed_attempt_now(
    staff, delivered, receiver, django_capture_on_commit_callbacks
):
    staff.user.user_permissions.add(Permission.objects.get(codename="resend_webhookdelivery"))
    receiver.default = 200

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            reverse(DELIVERIES), {"action": "resend", "_selected_action": [delivered.pk]}, follow=True
        )

    assert "Re-sending 1 delivery(ies) now." in response.content.decode()
    requests = receiver.wait_for(4)
    assert len(requests) == 4 and requests[3].body == requests[0].body  # the stored payload, again
    assert verify(delivered.endpoint.secret, requests[3].headers[HEADER], requests[3].body)
    delivered.refresh_from_db()
    assert (delivered.status, delivered.attempts, delivered.last_status_code) == ("succeeded", 4, 200)


def test_re_send_needs_its_permission(staff, delivered, receiver, django_capture_on_commit_callbacks):
    assert 'value="resend"' not in staff.get(reverse(DELIVERIES)).content.decode()

    with django_capture_on_commit_callbacks(execute=True) as queued:
        staff.post(reverse(DELIVERIES), {"action": "resend", "_selected_action": [delivered.pk]})

    assert queued == [] and len(receiver.requests) == 3
    delivered.refresh_from_db()
    assert delivered.status == WebhookDelivery.Status.FAILED
