"""Signing a webhook's body, and checking a signature: Stripe's scheme.

The header is `Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`.
The timestamp is inside the signed text, so a captured request can't be replayed later than
`tolerance` seconds. `verify` has no Django or Switchboard imports: receivers can copy it as is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Switchboard-Signature"
SECRET_PREFIX = "whsec_"


def secret_new() -> str:
    """A fresh endpoint secret: 32 random bytes, URL-safe, with a prefix that says what it is."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_mask(secret: str) -> str:
    """The secret as lists show it: the prefix and the last four characters."""
    return f"{SECRET_PREFIX}…{secret[-4:]}" if secret else ""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The Switchboard-Signature header's value for this body, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def verify(
    secret: str, header: str, body: bytes | str, tolerance: int = 300, now: float | None = None
) -> bool:
    """True when `header` signs exactly `body` (the raw request body, before any JSON parsing)
    with `secret`, at most `tolerance` seconds from now. Every v1 entry is tried; the comparison
    is constant-time."""
    if isinstance(body, str):
        body = body.encode()
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
