"""Twilio webhooks. Thin: check the signature, hand the form to a service, answer TwiML."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import VoiceResponse

from agents.models import Persona
from calls.engine.events import IncomingCall
from calls.store.db import DATABASE_DOWN, Batched
from calls.store.offline import call_answer_offline
from calls.store.services import NoPersonaAvailable, calls_start
from calls.webhooks.call_status import StatusEvent, call_status_record
from calls.webhooks.relay_actions import SessionEnd, relay_action_twiml
from calls.webhooks.requests import webhook_refusal
from calls.webhooks.stream_actions import stream_action_twiml
from calls.webhooks.transfers import DialEnd, dial_action_twiml
from calls.webhooks.twiml import connect_relay_twiml, connect_stream_twiml, unavailable_twiml

logger = logging.getLogger(__name__)


def twiml_response(twiml: str) -> HttpResponse:
    return HttpResponse(twiml, content_type="text/xml")


# Every call begins here, so webhooks come in bursts: those that arrive together are started in
# one hop to the database thread (calls.store.services.calls_start).
start_call = Batched(calls_start, name="call-starts")


@csrf_exempt
@require_POST
async def voice(request: HttpRequest) -> HttpResponse:
    """Twilio's "a call comes in" webhook: record the call and connect it to its persona's
    transport, ConversationRelay or Media Streams."""
    if refusal := webhook_refusal(request):
        return refusal
    call_sid = request.POST["CallSid"]  # well-formed: webhook_refusal checked it
    to_number = request.POST.get("To", "")
    incoming = IncomingCall(
        call_sid=call_sid,
        from_number=request.POST.get("From", ""),
        to_number=to_number,
        direction=request.POST.get("Direction", ""),
    )
    try:
        try:
            started = await start_call(incoming)
        except DATABASE_DOWN as exc:
            logger.error("call %s: database unreachable (%s); answering from memory", call_sid, exc)
            started = await call_answer_offline(incoming)
    except NoPersonaAvailable as exc:
        logger.error("call %s to %s refused: %s", call_sid, to_number, exc)
        return twiml_response(unavailable_twiml())
    except DATABASE_DOWN:
        logger.error("call %s: no persona in memory for %s while the database is away", call_sid, to_number)
        return twiml_response(unavailable_twiml())
    if started.persona.transport == Persona.Transport.MEDIA:
        return twiml_response(connect_stream_twiml(call=started.call, persona=started.persona))
    twiml = connect_relay_twiml(call=started.call, persona=started.persona, switchable=started.switchable)
    return twiml_response(twiml)


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    """`POST /twilio/status/`: the call's status callback. Always 200 for a valid signature, even
    for an unknown call, so Twilio doesn't retry what we can't use."""
    if refusal := webhook_refusal(request):
        return refusal
    call_status_record(StatusEvent.from_params(request.POST))
    return twiml_response(str(VoiceResponse()))


@csrf_exempt
@require_POST
def twilio_relay_action(request: HttpRequest) -> HttpResponse:
    """`POST /twilio/relay-action/`: the `<Connect action>` once a relay session ends; answers the
    TwiML that continues the call (reconnect, transfer, goodbye or hang up)."""
    if refusal := webhook_refusal(request):
        return refusal
    return twiml_response(relay_action_twiml(SessionEnd.from_params(request.POST)))


@csrf_exempt
@require_POST
def twilio_stream_action(request: HttpRequest) -> HttpResponse:
    """`POST /twilio/stream-action/`: the `<Connect action>` once a media stream ends; answers the
    TwiML that continues the call (transfer, or hang up)."""
    if refusal := webhook_refusal(request):
        return refusal
    return twiml_response(stream_action_twiml(request.POST))


@csrf_exempt
@require_POST
def twilio_dial_action(request: HttpRequest) -> HttpResponse:
    """`POST /twilio/dial-action/`: the `<Dial action>` once a transfer to a human ends; records
    how it went and ends the call (with an apology when nobody answered)."""
    if refusal := webhook_refusal(request):
        return refusal
    return twiml_response(dial_action_twiml(DialEnd.from_params(request.POST)))
