"""API keys named by personas: read from the environment at call time, never stored.

A persona names the variable that holds its key, and whoever edits personas could otherwise name
one of the server's own secrets and have it sent, as a key, to a base URL of their choosing.
"""

from __future__ import annotations

import logging
import os

from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)

# The server's own secrets (voiceproject/settings.py): never a provider's key.
SERVER_SECRETS = frozenset(
    {
        "SECRET_KEY",
        "DJANGO_SECRET_KEY",
        "TWILIO_AUTH_TOKEN",
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "POSTGRES_PASSWORD",
    }
)


def _is_server_secret(name: str) -> bool:
    return name in SERVER_SECRETS or name.endswith("_PASSWORD")


def not_a_server_secret(name: str) -> None:
    """Model validator for a persona's key-variable fields."""
    if _is_server_secret(name):
        raise ValidationError(f"{name} is one of the server's own secrets, not a provider's API key.")


def api_key(variable: str) -> str:
    """The key in environment variable `variable`; empty for the server's own secrets."""
    if _is_server_secret(variable):
        logger.error("refused to use the server secret %s as an API key", variable)
        return ""
    return os.environ.get(variable, "")
