"""Where webhooks may go: https, or plain http only to this machine or while DEBUG is on."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from outbound.models import WebhookEndpoint
from outbound.validation import webhook_url_validate


@pytest.mark.parametrize(
    "url",
    ["https://crm.example.com/hooks", "http://127.0.0.1:8080/h", "http://localhost/h", "http://[::1]:9/h"],
)
def test_https_and_loopback_urls_are_accepted(settings, url):
    settings.DEBUG = False
    webhook_url_validate(url)


@pytest.mark.parametrize("url", ["http://crm.example.com/hooks", "http://10.0.0.5/h", "ftp://example.com/h"])
def test_plain_http_elsewhere_is_refused(settings, url):
    settings.DEBUG = False
    with pytest.raises(ValidationError) as refused:
        webhook_url_validate(url)
    assert refused.value.code == "https_required"


def test_debug_allows_plain_http(settings):
    settings.DEBUG = True
    webhook_url_validate("http://crm.example.com/hooks")


@pytest.mark.django_db
def test_the_model_refuses_a_non_https_url(settings):
    settings.DEBUG = False
    endpoint = WebhookEndpoint(name="CRM", url="http://crm.example.com/hooks")
    with pytest.raises(ValidationError) as refused:
        endpoint.full_clean()
    assert "must use https" in refused.value.message_dict["url"][0]
    WebhookEndpoint(name="CRM", url="https://crm.example.com/hooks").full_clean()


@pytest.mark.django_db
def test_a_new_endpoint_gets_its_own_secret():
    first = WebhookEndpoint.objects.create(name="A", url="https://a.example.com/h")
    second = WebhookEndpoint.objects.create(name="B", url="https://b.example.com/h")
    assert first.secret.startswith("whsec_") and first.secret != second.secret
    old = first.secret
    assert first.secret_rotate() != old
    first.refresh_from_db()
    assert first.secret != old and first.secret.startswith("whsec_")
