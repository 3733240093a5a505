"""Admin login throttling (django-axes): wrong passwords lock the username and address out for the
cool-off, each failure is logged, staff can unlock, and the address is the proxy's word only
behind it."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "correct horse battery staple"
WRONG = "hunter2-wrong"


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("ops", "ops@example.com", PASSWORD)


@pytest.fixture
def limit(settings) -> int:
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def log_in(client: Client, password: str, *, username: str = "ops", **headers: str):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, headers=headers
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_wrong_passwords_lock_the_account_out_even_for_the_right_one(client, staff, limit, caplog):
    with caplog.at_level(logging.WARNING, logger="axes"):
        for _ in range(limit - 1):
            assert log_in(client, WRONG).status_code == 200  # the form again, with its error
        assert log_in(client, WRONG).status_code == 429  # the last failure allowed locks out
        refused = log_in(client, PASSWORD)
    assert refused.status_code == 429 and not logged_in(refused)
    assert "_auth_user_id" not in client.session
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address) == ("ops", "127.0.0.1")

    failures = [r.getMessage() for r in caplog.records if "login failure by" in r.getMessage()]
    assert len(failures) == limit + 1  # the right password while locked out counts as one too
    assert all('username: "ops"' in line and 'ip_address: "127.0.0.1"' in line for line in failures)
    assert not any(WRONG in r.getMessage() or PASSWORD in r.getMessage() for r in caplog.records)
    assert any("Locking out" in r.getMessage() for r in caplog.records)


def test_after_the_cool_off_the_right_password_works_again(client, staff, limit, settings):
    for _ in range(limit):
        log_in(client, WRONG)
    assert log_in(client, PASSWORD).status_code == 429
    # The cool-off runs from the last failure: move that back past it.
    passed = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=passed)
    assert logged_in(log_in(client, PASSWORD))
    assert not AccessAttempt.objects.exists()  # a success clears the count


def test_fewer_failures_than_the_limit_do_not_lock_out_and_a_success_resets_them(client, staff, limit):
    for _ in range(limit - 1):
        log_in(client, WRONG)
    assert logged_in(log_in(client, PASSWORD))
    assert not AccessAttempt.objects.exists()


def test_the_lockout_is_per_username_and_address(client, staff, limit):
    User.objects.create_superuser("other", "other@example.com", PASSWORD)
    for _ in range(limit):
        log_in(client, WRONG)
    # Nobody can lock another account out by guessing at it: the other one still logs in.
    assert logged_in(log_in(Client(), PASSWORD, username="other"))


def test_staff_unlock_a_locked_out_account_in_the_admin(client, staff, limit):
    for _ in range(limit):
        log_in(client, WRONG)
    colleague = User.objects.create_superuser("colleague", "c@example.com", PASSWORD)
    admin = Client()
    admin.force_login(colleague)
    changelist = admin.get("/admin/axes/accessattempt/")
    assert changelist.status_code == 200 and "ops" in changelist.content.decode()
    attempt = AccessAttempt.objects.get()
    response = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert logged_in(log_in(client, PASSWORD))


def test_behind_the_proxy_the_address_is_the_last_forwarded_one(client, staff, limit, settings):
    settings.BEHIND_TLS_PROXY = True
    for _ in range(limit):
        log_in(client, WRONG, X_Forwarded_For="203.0.113.9, 198.51.100.7")
    assert AccessAttempt.objects.get().ip_address == "198.51.100.7"
    # A forged first entry changes nothing: the proxy appended the address it saw.
    assert log_in(client, PASSWORD, X_Forwarded_For="192.0.2.1, 198.51.100.7").status_code == 429
    # Another caller behind the same proxy is not locked out.
    assert logged_in(log_in(Client(), PASSWORD, X_Forwarded_For="198.51.100.8"))


def test_without_the_proxy_a_forwarded_header_is_ignored(client, staff, limit, settings):
    settings.BEHIND_TLS_PROXY = False
    for n in range(limit):
        log_in(client, WRONG, X_Forwarded_For=f"192.0.2.{n}")
    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"
    assert log_in(client, PASSWORD, X_Forwarded_For="192.0.2.200").status_code == 429
