"""Relay setups that arrive together are bound together, and a bad one fails alone."""

from __future__ import annotations

import asyncio

import pytest
from django.db import DatabaseError

from agents.models import Persona
from calls.engine.conversation import start_session
from calls.engine.events import CallStart
from calls.models import Call, Turn
from calls.store.services import NoPersonaAvailable, RelaySession, relay_sessions_start
from calls.tests.conftest import db_thread_queries, statements

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def answered_call(default_persona) -> Call:
    """A call the voice webhook answered: it has its greeting."""
    call = Call.objects.create(call_sid="CAanswered0001", persona=default_persona, metadata={"note": "kept"})
    Turn.objects.create(
        call=call, sequence=0, role=Turn.Role.ASSISTANT, text="Hello!", generated_text="Hello!"
    )
    return call


async def test_setups_arriving_together_share_one_hop(answered_call, other_persona):
    starts = [
        CallStart("CAanswered0001", session_id="VX1", custom_parameters={"lang": "en"}),
        CallStart("CAunseen00002", session_id="VX2", to_number="+15550001111"),
        CallStart("CAunseen00003", session_id="VX3", to_number="+15550001111"),
    ]
    # The persona directory loads once per process (and after a persona is saved): not measured.
    await start_session(CallStart("CAwarmup00001", to_number="+15550001111"))
    sessions, captured = await db_thread_queries(asyncio.gather(*(start_session(start) for start in starts)))

    # Lock, insert the unseen calls, update all, read the histories: six queries for three calls.
    assert statements(captured) == ["BEGIN", "SELECT", "INSERT", "UPDATE x3", "SELECT", "COMMIT"]
    assert [s.call.call_sid for s in sessions] == [start.call_sid for start in starts]
    assert [[t.text for t in s.turns] for s in sessions] == [["Hello!"], [], []]
    rows = {c.call_sid: c async for c in Call.objects.filter(call_sid__in=[s.call_sid for s in starts])}
    assert {sid: (c.session_id, c.status) for sid, c in rows.items()} == {
        "CAanswered0001": ("VX1", Call.Status.IN_PROGRESS),
        "CAunseen00002": ("VX2", Call.Status.IN_PROGRESS),
        "CAunseen00003": ("VX3", Call.Status.IN_PROGRESS),
    }
    assert rows["CAanswered0001"].metadata == {"note": "kept", "customParameters": {"lang": "en"}}
    assert all(c.started_at is not None for c in rows.values())
    assert sessions[0].call.persona.slug == answered_call.persona.slug
    assert sessions[0].languages[0] == answered_call.persona.language


def test_a_start_no_persona_can_answer_fails_alone(answered_call, default_persona):
    Persona.objects.filter(pk=default_persona.pk).update(is_active=False)
    results = relay_sessions_start(
        [CallStart("CAnobody00001"), CallStart("CAanswered0001", session_id="VX1")]
    )

    assert isinstance(results[0], NoPersonaAvailable)
    assert isinstance(results[1], RelaySession) and results[1].call.session_id == "VX1"
    assert not Call.objects.filter(call_sid="CAnobody00001").exists()


def test_when_the_batch_fails_each_start_is_tried_alone(answered_call, database_refuses_one_call, caplog):
    results = relay_sessions_start(
        [CallStart("CArefused0001", session_id="VX1"), CallStart("CAanswered0001", session_id="VX2")]
    )
    assert isinstance(results[0], DatabaseError) and "refused" in str(results[0])
    assert isinstance(results[1], RelaySession)
    assert Call.objects.get(call_sid="CAanswered0001").session_id == "VX2"
    assert not Call.objects.filter(call_sid="CArefused0001").exists()  # its transaction rolled back
    assert "binding 2 relay sessions at once failed" in caplog.text
