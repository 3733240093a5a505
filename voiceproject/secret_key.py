"""Is SECRET_KEY fit to sign sessions and CSRF tokens? Django's own rule (W009: 50 characters, 5
distinct, not its `django-insecure-` prefix), plus the placeholders this project hands out."""

from __future__ import annotations

from django.conf import settings
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

# .env.example's "!!!SET ...!!!" marker: a key padded past 50 characters around it is still the placeholder.
PLACEHOLDER_MARKERS = ("!!!set", "change-me", "changeme")  # compared lower case

GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'


def secret_key_weakness(key: str) -> str | None:
    """Why `key` is too weak to serve with DEBUG off, or None when it will do."""
    if any(marker in key.lower() for marker in PLACEHOLDER_MARKERS):
        return "SECRET_KEY is still a placeholder"
    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"SECRET_KEY starts with {SECRET_KEY_INSECURE_PREFIX!r}: Django generated it for development"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"SECRET_KEY has {len(key)} characters, fewer than {SECRET_KEY_MIN_LENGTH}"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"SECRET_KEY has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct characters"
    return None


def refuse_to_serve_with_a_weak_key() -> None:
    """Stop a server process (the ASGI and WSGI entry points call this) from starting with DEBUG
    off and a weak key. Only there: collectstatic in the image build, CI's makemigrations and
    the test run sign nothing anyone relies on, and `check --deploy` reports it as an Error."""
    weakness = None if settings.DEBUG else secret_key_weakness(settings.SECRET_KEY)
    if weakness:
        raise ImproperlyConfigured(f"Refusing to serve with DEBUG off: {weakness}. Generate one: {GENERATE}")
