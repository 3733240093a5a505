"""One signed POST of a webhook body, and what came back."""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from django.conf import settings

from outbound.signing import HEADER, sign

USER_AGENT = "Switchboard-Webhooks/1"
RESPONSE_KEPT_BYTES = 2048


@dataclass(frozen=True)
class Sent:
    status_code: int | None  # None: no HTTP answer (connection refused, timeout)
    response: str = ""  # the first 2 KB of the body
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _head(response: httpx2.Response) -> str:
    # Only the first 2 KB are read: a receiver answering with megabytes costs us nothing.
    kept = b""
    for chunk in response.iter_bytes():
        kept += chunk
        if len(kept) >= RESPONSE_KEPT_BYTES:
            break
    # PostgreSQL text can't hold NUL.
    return kept[:RESPONSE_KEPT_BYTES].decode("utf-8", "replace").replace("\x00", "")


def post(url: str, body: bytes, *, secret: str) -> Sent:
    """POST `body` to `url`, signed with `secret`. Redirects are not followed: a 3xx is a failure
    (a receiver that moved should be edited, not trusted to forward a caller's words)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER: sign(secret, body),
    }
    try:
        with (
            httpx2.Client(timeout=settings.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            head = _head(response)
    except httpx2.HTTPError as exc:
        return Sent(status_code=None, error=f"{type(exc).__name__}: {str(exc)[:500]}")
    sent = Sent(status_code=response.status_code, response=head)
    return sent if sent.ok else Sent(response.status_code, head, error=f"HTTP {response.status_code}")
