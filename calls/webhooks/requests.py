"""What every Twilio webhook passes before its service sees the form: Twilio's signature (403
otherwise), then Twilio-shaped identifiers (400 otherwise)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden

from calls.twilio_ids import webhook_sid_problem
from calls.webhooks.signatures import webhook_signature_is_valid

logger = logging.getLogger(__name__)


def webhook_refusal(request: HttpRequest) -> HttpResponse | None:
    """The response that refuses this webhook, or None to go on.

    Identifiers are checked after the signature: an unsigned request learns nothing more than
    403. A signed one with a malformed sid is a bug or a leaked token, not a retryable failure:
    400 with a log line, rather than a 500 from the column it would overflow.
    """
    if not webhook_signature_is_valid(request):
        return HttpResponseForbidden()
    problem = webhook_sid_problem(request.POST)
    if problem:
        logger.warning("Refused webhook %s: %s", request.path, problem)
        return HttpResponseBadRequest(f"Not a Twilio request: {problem}.", content_type="text/plain")
    return None
