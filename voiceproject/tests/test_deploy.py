"""The documented production environment passes `check --deploy`; a weak SECRET_KEY with DEBUG
off fails it, and stops a server from starting. Each in a fresh interpreter: settings read the
environment once."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from voiceproject.secret_key import secret_key_weakness

ROOT = Path(__file__).resolve().parents[2]

# The README's production environment, as .env holds it (the database and Redis are not
# reached by `check` without --database).
PRODUCTION = {
    "DEBUG": "false",
    "DATABASE_URL": "postgres://switchboard:password@postgres:5432/switchboard",
    "REDIS_URL": "redis://redis:6379/0",
    "PUBLIC_BASE_URL": "https://voice.example.com",
    "ALLOWED_HOSTS": "voice.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://voice.example.com",
    "BEHIND_TLS_PROXY": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "TWILIO_AUTH_TOKEN": "a-twilio-auth-token",
}


def run(args: list[str], **environment: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "voiceproject.settings", **environment}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def strong_key() -> str:
    return secrets.token_urlsafe(50)


def test_check_deploy_is_clean_in_the_documented_production_environment():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION, SECRET_KEY=strong_key()
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_on_a_weak_secret_key():
    result = run(["manage.py", "check", "--deploy"], **PRODUCTION, SECRET_KEY="x")
    assert result.returncode != 0
    assert "(switchboard.E001) SECRET_KEY has 1 characters, fewer than 50." in result.stderr


@pytest.mark.parametrize(
    ("key", "weakness"),
    [
        ("x", "1 characters, fewer than 50"),
        ("test-only-not-secret", "20 characters"),
        ("ab" * 40, "fewer than 5 distinct characters"),
        ("django-insecure-" + secrets.token_urlsafe(50), "Django generated it"),
        ("!!!SET A LONG RANDOM SECRET_KEY!!!" + secrets.token_urlsafe(30), "placeholder"),
    ],
)
def test_weak_keys_say_why(key, weakness):
    assert weakness in secret_key_weakness(key)


def test_a_random_key_is_strong():
    assert secret_key_weakness(strong_key()) is None


SERVE = ["-c", "import voiceproject.asgi; print('serving')"]


def test_a_server_refuses_to_start_with_debug_off_and_a_weak_key():
    result = run(SERVE, **PRODUCTION, SECRET_KEY="test-only-not-secret")
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: Refusing to serve with DEBUG off: SECRET_KEY has 20 characters"
        in result.stderr
    )
    assert "serving" not in result.stdout


def test_a_server_starts_with_a_strong_key_or_in_the_embedded_run():
    assert run(SERVE, **PRODUCTION, SECRET_KEY=strong_key()).stdout.strip().endswith("serving")
    assert run(SERVE).stdout.strip().endswith("serving")  # DEBUG on, its own insecure key


def test_commands_that_sign_nothing_still_run_with_a_throwaway_key():
    # CI's makemigrations and the image's collectstatic run with SECRET_KEY=ci / build-only.
    result = run(["manage.py", "check"], **PRODUCTION, SECRET_KEY="ci")
    assert result.returncode == 0, result.stderr
