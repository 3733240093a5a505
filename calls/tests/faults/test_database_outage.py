"""PostgreSQL going away under live calls (a restart, a failover), played by cutting a proxy in
front of the real server: calls keep being answered and conversing, and when the database is
back every turn is there, in order, with no gap."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection

from agents import directory
from calls.models import Call, Turn
from calls.tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CALLED = "+14155550100"


def stored(call_sid: str) -> list[tuple]:
    return list(
        Turn.objects.filter(call__call_sid=call_sid).in_order().values_list("sequence", "role", "text")
    )


def voice_params(call_sid: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+14155550198", "To": CALLED}


async def eventually(predicate, timeout: float = 15.0):
    """Poll the database (on a thread of its own) until `predicate` holds; the thread's connection
    may be one the outage dropped, so it reconnects."""

    def attempt():
        try:
            return predicate()
        except OperationalError:
            connection.close()
            return False

    return await sync_to_async(wait_until, thread_sensitive=False)(attempt, timeout=timeout)


async def test_a_call_that_arrives_during_an_outage_is_answered_and_recorded_when_it_returns(
    default_persona, fake_anthropic, database_outage, twilio_post, relay
):
    fake_anthropic.reply_with(["We open", " at nine."])
    call_sid = "CA" + "b" * 32
    await sync_to_async(directory.persona_for_number)(CALLED)  # an earlier call loaded it

    database_outage.cut()
    response = await sync_to_async(twilio_post, thread_sensitive=False)(
        "/twilio/voice/", voice_params(call_sid)
    )
    assert response.status_code == 200
    assert "<ConversationRelay" in response.content.decode()
    client = await relay(call_sid)
    await client.prompt("When do you open?")
    frames = await client.reply()
    assert "".join(frame["token"] for frame in frames) == "We open at nine."
    await client.hang_up()  # still during the outage

    database_outage.restore()
    await eventually(lambda: Call.objects.filter(call_sid=call_sid, status=Call.Status.COMPLETED).exists())
    assert await sync_to_async(stored, thread_sensitive=False)(call_sid) == [
        (0, "assistant", default_persona.welcome_greeting),
        (1, "user", "When do you open?"),
        (2, "assistant", "We open at nine."),
    ]
    call = await Call.objects.aget(call_sid=call_sid)
    assert (call.persona_id, call.from_number, call.summary_status) == (
        default_persona.pk,
        "+14155550198",
        Call.SummaryStatus.QUEUED,
    )


async def test_a_live_call_keeps_every_turn_through_an_outage(
    default_persona, fake_anthropic, database_outage, relay
):
    fake_anthropic.reply_with(["First answer."], ["Second answer."], ["Third answer."])
    call_sid = "CA" + "c" * 32
    client = await relay(call_sid)
    await client.prompt("One?")
    await client.reply()
    await eventually(lambda: len(stored(call_sid)) == 2)

    database_outage.cut()
    await client.prompt("Two?")
    await client.reply()
    await client.prompt("Three?")
    await client.reply()
    # The turns' writes met the outage (they were tried, and refused) before it ends.
    await eventually(lambda: database_outage.refused > 0)
    database_outage.restore()
    await client.hang_up()

    await eventually(lambda: Call.objects.filter(call_sid=call_sid, status=Call.Status.COMPLETED).exists())
    assert await sync_to_async(stored, thread_sensitive=False)(call_sid) == [
        (0, "user", "One?"),
        (1, "assistant", "First answer."),
        (2, "user", "Two?"),
        (3, "assistant", "Second answer."),
        (4, "user", "Three?"),
        (5, "assistant", "Third answer."),
    ]
