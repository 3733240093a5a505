"""Where a webhook may be sent: https only, except to this machine or while DEBUG is on.

The payload holds a caller's words and number; over plain http anyone on the path reads them.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_url_validate(url: str) -> None:
    """Refuse anything but an https URL, unless DEBUG is on or the host is a loopback address."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and (settings.DEBUG or is_loopback(parts.hostname or "")):
        return
    raise ValidationError(
        "Webhook URLs must use https (plain http only to localhost, or while DEBUG is on).",
        code="https_required",
    )
