"""Twilio request signatures: webhooks and the websocket handshakes (ConversationRelay, Media Streams).

Twilio signs the public URL it called, so we validate against PUBLIC_BASE_URL + path and never
against the Host header, which a proxy or tunnel rewrites.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from django.conf import settings
from django.http import HttpRequest
from twilio.request_validator import RequestValidator

logger = logging.getLogger(__name__)


def public_url(path: str) -> str:
    """The https URL Twilio uses for one of our paths."""
    return f"{settings.PUBLIC_BASE_URL}{path}"


def websocket_url(path: str) -> str:
    """A socket's public URL as put in TwiML: wss for an https base, ws for a local http one."""
    base = settings.PUBLIC_BASE_URL
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def relay_websocket_url() -> str:
    """The ConversationRelay socket."""
    return websocket_url("/ws/relay/")


def media_websocket_url() -> str:
    """The Media Streams socket."""
    return websocket_url("/ws/media/")


def _unsigned_allowed(what: str) -> bool:
    if settings.DEBUG:
        logger.warning("TWILIO_AUTH_TOKEN is unset: accepting unsigned %s because DEBUG is on", what)
        return True
    logger.error("TWILIO_AUTH_TOKEN is unset: refusing %s (set it, or run with DEBUG on locally)", what)
    return False


def signature_is_valid(urls: Iterable[str], params: Mapping | dict, signature: str | None, what: str) -> bool:
    """True when `signature` matches any of `urls` (variants of the same public URL)."""
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        return _unsigned_allowed(what)
    if not signature:
        logger.warning("Refused %s: no X-Twilio-Signature", what)
        return False
    validator = RequestValidator(token)
    if any(validator.validate(url, params, signature) for url in urls):
        return True
    logger.warning("Refused %s: X-Twilio-Signature does not match", what)
    return False


def webhook_signature_is_valid(request: HttpRequest) -> bool:
    """Validate a Twilio webhook (form POST) against its public URL, query string included."""
    url = public_url(request.get_full_path())
    return signature_is_valid(
        [url], request.POST, request.headers.get("X-Twilio-Signature"), f"webhook {request.path}"
    )


def handshake_signature_is_valid(scope: Mapping) -> bool:
    """Validate the websocket upgrade against the public URL of the path it asked for, as our
    TwiML emitted it (and its trailing-slash variant, which Twilio's docs say to try)."""
    headers = dict(scope.get("headers") or [])
    signature = headers.get(b"x-twilio-signature", b"").decode() or None
    path = scope["path"]  # routing only reaches here for our socket paths
    url = websocket_url(path)
    query = scope.get("query_string", b"").decode()
    if query:
        url = f"{url}?{query}"
    variants = [url, url.rstrip("/") if url.endswith("/") else f"{url}/"]
    return signature_is_valid(variants, {}, signature, f"websocket handshake {path}")
