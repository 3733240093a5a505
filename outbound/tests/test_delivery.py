"""From a stored summary to signed POSTs at a real receiver, retries and failures recorded
(Celery eager: the task, its retries and the publishing run in this process)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import Call
from calls.privacy.anonymisation import calls_anonymise
from calls.summaries.writer import call_summarize
from outbound import sweep
from outbound.delivery import retry_delay
from outbound.models import WebhookDelivery, WebhookEndpoint
from outbound.sending import RESPONSE_KEPT_BYTES
from outbound.signing import HEADER, verify
from outbound.tasks import deliver_webhook, deliveries_sweep

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


def summarise(call: Call, django_capture_on_commit_callbacks) -> str:
    with django_capture_on_commit_callbacks(execute=True):
        return call_summarize(call.pk)


def test_a_done_summary_posts_one_signed_request_per_active_endpoint(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    second = WebhookEndpoint.objects.create(name="Helpdesk", url=receiver.url + "/second")
    WebhookEndpoint.objects.create(name="Old CRM", url=receiver.url + "/inactive", is_active=False)

    assert summarise(queued_call, django_capture_on_commit_callbacks) == Call.SummaryStatus.DONE

    requests = receiver.wait_for(2)
    assert sorted(r.path for r in requests) == ["/hooks/switchboard", "/hooks/switchboard/second"]
    queued_call.refresh_from_db()
    for request, target in zip(sorted(requests, key=lambda r: r.path), [endpoint, second], strict=True):
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == "Switchboard-Webhooks/1"
        assert verify(target.secret, request.headers[HEADER], request.body)
        assert not verify(
            (second if target == endpoint else endpoint).secret, request.headers[HEADER], request.body
        )
        payload = json.loads(request.body)
        delivery = WebhookDelivery.objects.get(endpoint=target)
        assert (payload["event"], payload["id"]) == ("call.summarized", delivery.pk)
        assert payload["call"] == {
            "call_sid": queued_call.call_sid,
            "persona": queued_call.persona.slug,
            "from": "+14155550111",
            "to": "+14155550100",
            "direction": "inbound",
            "status": "completed",
            "started_at": None,
            "ended_at": None,
            "duration_seconds": 42,
            "summary_outcome": queued_call.summary_outcome,
        }
        assert [t["sequence"] for t in payload["transcript"]] == [0, 1, 2]
        cut = payload["transcript"][2]
        assert cut["text"] == "Sure, we have Thursday"  # what the caller heard
        assert cut["generated_text"] == "Sure, we have Thursday at nine or Friday at two."
        assert cut["interrupted"] is True and cut["tool_calls"][0]["name"] == "end_call"
        assert payload["transcript"][1] == {
            "sequence": 1, "role": "user", "text": "I need to move my appointment.",
            "generated_text": "", "interrupted": False, "tool_calls": [],
        }  # fmt: skip
        assert payload["summary"] == queued_call.summary_data and payload["summary"]["summary"]
        assert delivery.status == WebhookDelivery.Status.SUCCEEDED
        assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
        assert (
            delivery.last_response.startswith("status 200")
            and len(delivery.last_response) == RESPONSE_KEPT_BYTES
        )
        assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert WebhookDelivery.objects.count() == 2  # the inactive endpoint got no delivery


def test_a_skipped_summary_sends_nothing(receiver, endpoint, queued_call, django_capture_on_commit_callbacks):
    queued_call.turns.filter(role="user").delete()

    assert summarise(queued_call, django_capture_on_commit_callbacks) == Call.SummaryStatus.SKIPPED

    assert not WebhookDelivery.objects.exists() and receiver.requests == []


def test_a_500_is_retried_with_backoff_then_fails_with_every_attempt_recorded(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    receiver.default = 500

    summarise(queued_call, django_capture_on_commit_callbacks)

    requests = receiver.wait_for(3)
    assert len(requests) == 3  # WEBHOOK_MAX_ATTEMPTS, no more
    assert len({r.body for r in requests}) == 1  # the same payload every time
    assert all(verify(endpoint.secret, r.headers[HEADER], r.body) for r in requests)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (3, 500, "HTTP 500")
    assert delivery.last_response.startswith("status 500")
    assert delivery.delivered_at is None and delivery.next_attempt_at is None


def test_a_retry_that_gets_through_succeeds(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    receiver.answers.extend([503, 200])

    summarise(queued_call, django_capture_on_commit_callbacks)

    assert len(receiver.wait_for(2)) == 2
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)


def test_a_slow_receiver_times_out_and_the_timeout_is_recorded(
    receiver, endpoint, queued_call, webhook_settings, django_capture_on_commit_callbacks
):
    webhook_settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    webhook_settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.hold()

    summarise(queued_call, django_capture_on_commit_callbacks)
    receiver.release()

    assert len(receiver.wait_for(2)) == 2
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 2, None)
    assert delivery.last_error.startswith("ReadTimeout")


def test_an_unreachable_endpoint_records_the_connection_error(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    receiver.stop()

    summarise(queued_call, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.last_error.startswith("ConnectError")


def test_a_duplicate_message_sends_nothing_more(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    summarise(queued_call, django_capture_on_commit_callbacks)
    receiver.wait_for(1)
    delivery = WebhookDelivery.objects.get()

    assert deliver_webhook.delay(delivery.pk).get() == ""  # already succeeded

    delivery.refresh_from_db()
    assert len(receiver.requests) == 1 and delivery.attempts == 1


def test_a_delivery_in_flight_is_not_taken_twice(receiver, endpoint, queued_call):
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        call=queued_call,
        event="call.summarized",
        next_attempt_at=timezone.now() + timedelta(seconds=120),
    )  # as a claim leaves it

    assert deliver_webhook.delay(delivery.pk).get() == ""

    assert receiver.requests == []


def test_an_endpoint_deactivated_before_the_attempt_gets_nothing(receiver, endpoint, queued_call):
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, call=queued_call, event="call.summarized")
    endpoint.is_active = False
    endpoint.save()

    assert deliver_webhook.delay(delivery.pk).get() == "failed"

    delivery.refresh_from_db()
    assert receiver.requests == [] and "deactivated" in delivery.last_error


def test_retry_delays_double_with_jitter_up_to_the_cap(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10.0
    settings.WEBHOOK_RETRY_MAX_SECONDS = 300.0
    for attempts, full in [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (15, 300)]:
        delays = [retry_delay(attempts) for _ in range(20)]
        assert all(0.75 * full <= d <= full for d in delays), (attempts, delays)


def test_the_sweep_finds_deliveries_whose_message_was_lost(endpoint, queued_call, settings):
    settings.WEBHOOK_SWEEP_INTERVAL_SECONDS = 60
    now = timezone.now()

    def delivery(**fields) -> WebhookDelivery:
        return WebhookDelivery.objects.create(
            endpoint=endpoint, call=queued_call, event="call.summarized", **fields
        )

    lost = delivery(next_attempt_at=now - timedelta(minutes=5))
    delivery(next_attempt_at=now - timedelta(seconds=5))  # its message is on its way
    delivery(next_attempt_at=now + timedelta(seconds=100))  # claimed
    delivery(status="failed", next_attempt_at=None)

    assert sweep.deliveries_overdue() == [lost.pk]


def test_deleting_a_call_deletes_its_deliveries_and_their_payloads(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    summarise(queued_call, django_capture_on_commit_callbacks)
    assert WebhookDelivery.objects.filter(call=queued_call).exists()

    queued_call.delete()  # as erasure and retention do

    assert not WebhookDelivery.objects.exists()


def test_anonymising_a_call_clears_its_deliveries_payloads_and_stops_sending(
    receiver, endpoint, queued_call, django_capture_on_commit_callbacks
):
    summarise(queued_call, django_capture_on_commit_callbacks)
    sent = WebhookDelivery.objects.get()
    pending = WebhookDelivery.objects.create(
        endpoint=endpoint, call=queued_call, event="call.summarized", payload=sent.payload
    )
    calls_anonymise([queued_call.pk])

    assert deliver_webhook.delay(pending.pk).get() == "failed"  # never sent, even before the sweep
    assert deliveries_sweep.delay().get() == 0

    assert len(receiver.requests) == 1
    assert list(WebhookDelivery.objects.order_by("pk").values_list("status", "payload", "last_response")) == [
        ("succeeded", {}, ""),
        ("failed", {}, ""),
    ]


def test_the_sweep_queues_a_lost_delivery_again(receiver, endpoint, queued_call):
    lost = WebhookDelivery.objects.create(
        endpoint=endpoint,
        call=queued_call,
        event="call.summarized",
        payload={"event": "call.summarized", "id": 1},
        next_attempt_at=timezone.now() - timedelta(minutes=5),
    )

    assert deliveries_sweep.delay().get() == 1

    [request] = receiver.wait_for(1)
    assert json.loads(request.body) == {"event": "call.summarized", "id": 1}
    lost.refresh_from_db()
    assert (lost.status, lost.attempts) == ("succeeded", 1)
