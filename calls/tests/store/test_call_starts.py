"""Voice webhooks that arrive together start their calls together, and a bad one fails alone."""

from __future__ import annotations

import asyncio

import pytest
from django.db import DatabaseError
from twilio.request_validator import RequestValidator

from agents.models import Persona, PersonaLanguage, PhoneNumber
from calls.engine.events import IncomingCall
from calls.models import Call, Turn
from calls.store.services import NoPersonaAvailable, StartedCall, calls_start
from calls.tests.conftest import db_thread_queries, statements
from calls.views import start_call

pytestmark = pytest.mark.django_db(transaction=True)

ROUTED = "+15550003333"


@pytest.fixture
def ringing_call(default_persona) -> Call:
    """A call whose first webhook delivery was handled: Twilio retries it."""
    call = Call.objects.create(call_sid="CAretried0001", persona=default_persona, from_number="+1555")
    Turn.objects.create(
        call=call, sequence=0, role=Turn.Role.ASSISTANT, text="Hello!", generated_text="Hello!"
    )
    return call


async def test_webhooks_arriving_together_share_one_hop(ringing_call, other_persona):
    await PhoneNumber.objects.acreate(number=ROUTED, persona=other_persona)
    incoming = [
        IncomingCall("CAretried0001", from_number="+15550001111", to_number="+15550002222"),
        IncomingCall("CAnew00000002", from_number="+15550004444", to_number=ROUTED, direction="inbound"),
        IncomingCall("CAnew00000003", to_number="+15550009999", direction="outbound-api"),
    ]
    # The persona directory loads once per process (and after a persona is saved): not measured.
    await start_call(IncomingCall("CAwarmup00001", to_number=ROUTED))
    await start_call(IncomingCall("CAwarmup00002", to_number="+15550009999"))
    started, captured = await db_thread_queries(asyncio.gather(*(start_call(one) for one in incoming)))

    # Lock, insert the new calls, update the retried one, insert the greetings: one transaction.
    assert statements(captured) == ["BEGIN", "SELECT", "INSERT", "UPDATE x1", "INSERT", "COMMIT"]
    assert [s.call.call_sid for s in started] == [one.call_sid for one in incoming]
    assert [s.persona.slug for s in started] == [
        ringing_call.persona.slug,  # a retry keeps the persona it began with
        other_persona.slug,  # routed by the number called
        ringing_call.persona.slug,  # the default
    ]
    rows = {c.call_sid: c async for c in Call.objects.filter(call_sid__in=[i.call_sid for i in incoming])}
    assert {sid: (c.from_number, c.to_number, c.direction, c.status) for sid, c in rows.items()} == {
        "CAretried0001": ("+15550001111", "+15550002222", Call.Direction.INBOUND, Call.Status.RINGING),
        "CAnew00000002": ("+15550004444", ROUTED, Call.Direction.INBOUND, Call.Status.RINGING),
        "CAnew00000003": ("", "+15550009999", Call.Direction.OUTBOUND_API, Call.Status.RINGING),
    }
    assert all(c.started_at is not None for c in rows.values())
    greetings = [
        (t.call.call_sid, t.sequence, t.role, t.text)
        async for t in Turn.objects.filter(call__in=rows.values()).select_related("call").order_by("call_id")
    ]
    assert greetings == [
        ("CAretried0001", 0, Turn.Role.ASSISTANT, "Hello!"),  # kept, not doubled
        ("CAnew00000002", 0, Turn.Role.ASSISTANT, other_persona.welcome_greeting),
        ("CAnew00000003", 0, Turn.Role.ASSISTANT, ringing_call.persona.welcome_greeting),
    ]


def test_a_call_no_persona_can_answer_fails_alone(ringing_call, default_persona):
    Persona.objects.filter(pk=default_persona.pk).update(is_active=False)
    results = calls_start([IncomingCall("CAnobody00001"), IncomingCall("CAretried0001", to_number="+1")])

    assert isinstance(results[0], NoPersonaAvailable)
    assert isinstance(results[1], StartedCall) and results[1].call.to_number == "+1"
    assert not Call.objects.filter(call_sid="CAnobody00001").exists()


def test_the_same_call_twice_in_one_batch_is_one_call(default_persona):
    results = calls_start([IncomingCall("CAtwice000001"), IncomingCall("CAtwice000001", from_number="+2")])

    assert results[0].call.pk == results[1].call.pk
    call = Call.objects.get(call_sid="CAtwice000001")
    assert call.from_number == "+2"
    assert call.turns.count() == 1


def test_the_languages_it_may_switch_to_come_with_the_started_call(default_persona):
    PersonaLanguage.objects.create(persona=default_persona, code="fr-FR", voice="fr-voice")
    PersonaLanguage.objects.create(persona=default_persona, code="es-ES")

    (started,) = calls_start([IncomingCall("CAlanguages01")])

    assert [(lang.code, lang.voice) for lang in started.switchable] == [("es-ES", ""), ("fr-FR", "fr-voice")]


def test_when_the_batch_fails_each_call_is_started_alone(default_persona, database_refuses_one_call, caplog):
    results = calls_start([IncomingCall("CArefused0001"), IncomingCall("CAaccepted001")])

    assert isinstance(results[0], DatabaseError) and "refused" in str(results[0])
    assert isinstance(results[1], StartedCall)
    assert Call.objects.get(call_sid="CAaccepted001").turns.get().sequence == 0
    assert not Call.objects.filter(call_sid="CArefused0001").exists()  # its transaction rolled back
    assert "starting 2 calls at once failed" in caplog.text


async def test_concurrent_voice_webhooks_are_each_answered_with_their_own_call(
    async_client, twilio_token, settings, default_persona
):
    async def ring(call_sid: str):
        params = {"CallSid": call_sid, "From": "+15550001111", "To": "+15550002222"}
        url = f"{settings.PUBLIC_BASE_URL}/twilio/voice/"
        signature = RequestValidator(twilio_token).compute_signature(url, params)
        return await async_client.post("/twilio/voice/", params, headers={"X-Twilio-Signature": signature})

    sids = [f"CA{n:032x}" for n in range(4)]
    responses = await asyncio.gather(*(ring(sid) for sid in sids))

    assert [r.status_code for r in responses] == [200] * 4
    calls = {c.call_sid: c async for c in Call.objects.filter(call_sid__in=sids)}
    for sid, response in zip(sids, responses, strict=True):
        assert f'name="call_id" value="{calls[sid].pk}"'.encode() in response.content
    greetings = [t async for t in Turn.objects.filter(call__in=calls.values())]
    assert sorted(t.call_id for t in greetings) == sorted(c.pk for c in calls.values())
