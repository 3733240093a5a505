"""Twilio webhooks of the calls app: thin views that check the signature and hand over to a service."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import VoiceResponse

from calls.call_status import StatusEvent, call_status_record
from calls.relay_actions import SessionEnd, relay_action_twiml
from calls.signatures import webhook_signature_is_valid

# --- After the call: status and <Connect action> callbacks -------------------------------------


def _twiml(twiml: str) -> HttpResponse:
    return HttpResponse(twiml, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    """`POST /twilio/status/`: the call's status callback. Always 200 for a valid signature, even
    for an unknown call, so Twilio doesn't retry what we can't use."""
    if not webhook_signature_is_valid(request):
        return HttpResponseForbidden()
    call_status_record(StatusEvent.from_params(request.POST))
    return _twiml(str(VoiceResponse()))


@csrf_exempt
@require_POST
def twilio_relay_action(request: HttpRequest) -> HttpResponse:
    """`POST /twilio/relay-action/`: the `<Connect action>` once a relay session ends; answers the
    TwiML that continues the call (reconnect, goodbye or hang up)."""
    if not webhook_signature_is_valid(request):
        return HttpResponseForbidden()
    return _twiml(relay_action_twiml(SessionEnd.from_params(request.POST)))
