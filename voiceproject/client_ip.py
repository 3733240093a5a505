"""The client address that login throttling (django-axes) counts failures against.

Behind the TLS proxy every request comes from the proxy's address: one caller's mistakes would
lock out everyone. The proxy appends the address it saw to X-Forwarded-For, so the last entry is
the one it vouches for; anything before it was sent by the client and can be forged. Without a
proxy, the header is the client's own and is ignored.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address: the proxy's last X-Forwarded-For entry behind it, else the peer."""
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR") or None
