"""HTTPS behind the TLS proxy: plain http is redirected, except the health check compose makes
over loopback; Twilio's webhooks (https at the proxy) pass, signed against the public URL; HSTS
goes out on secure responses."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

HTTPS = {"X_Forwarded_Proto": "https"}


@pytest.fixture
def behind_proxy(settings) -> None:
    # What BEHIND_TLS_PROXY=true sets (settings are read once, so the test sets them directly).
    settings.BEHIND_TLS_PROXY = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.ALLOWED_HOSTS = ["switchboard.example.com", "127.0.0.1", "localhost", "testserver"]


def test_plain_http_through_the_proxy_is_redirected_to_https(behind_proxy, client):
    response = client.get("/admin/login/", headers={"X_Forwarded_Proto": "http"})
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/admin/login/"


def test_the_health_check_answers_over_plain_http_on_loopback(behind_proxy):
    # docker-compose: urlopen('http://127.0.0.1:8000/health/'), straight to uvicorn, no proxy header.
    response = Client(HTTP_HOST="127.0.0.1:8000").get("/health/")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_https_responses_carry_hsts(behind_proxy, client):
    response = client.get("/admin/login/", headers=HTTPS)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_no_hsts_by_default_on_https(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings.SECURE_HSTS_SECONDS == 0 and settings.SECURE_SSL_REDIRECT is False
    assert "Strict-Transport-Security" not in client.get("/admin/login/", headers=HTTPS)


def test_a_twilio_webhook_through_the_proxy_is_served_and_its_signature_checked(
    behind_proxy, twilio_post, client, default_persona
):
    # The proxy forwards https, so no redirect; the signature covers PUBLIC_BASE_URL + path, not
    # the URL the request rebuilds from the Host the proxy passes on (here with its own port).
    client.defaults.update(HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="switchboard.example.com:8443")
    form = {"CallSid": "CA" + "ab" * 16, "AccountSid": "AC" + "cd" * 16, "To": "+15550002222"}
    assert twilio_post("/twilio/voice/", form).status_code == 200
    assert twilio_post("/twilio/voice/", form, signature="forged").status_code == 403
