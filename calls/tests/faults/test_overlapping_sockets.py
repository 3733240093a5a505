"""Two live sockets for one CallSid (a Twilio reconnect that overlaps the old socket): the new one
takes the call over, the old one stores what it sent and is closed, and the transcript has every
turn once, numbered without a gap."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from calls.engine import handover
from calls.models import Call, Turn
from fakes.base import FakeReply

pytestmark = pytest.mark.django_db(transaction=True)

CALL_SID = "CA" + "d" * 32
OLD_SESSION = "VX" + "0" * 32
NEW_SESSION = "VX" + "1" * 32


def stored() -> list[tuple]:
    return list(
        Turn.objects.filter(call__call_sid=CALL_SID)
        .in_order()
        .values_list("sequence", "role", "text", "interrupted")
    )


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(block.get("text", "") for block in content)


async def test_a_second_socket_takes_the_call_over_from_the_first(default_persona, fake_anthropic, relay):
    fake_anthropic.reply_with(["First", " answer."])
    old = await relay(CALL_SID)
    await old.prompt("One?")
    await old.reply()
    # The old socket is mid-reply when Twilio opens the new one.
    fake_anthropic.queue(FakeReply(tokens=["Half", " a", " reply", " never", " sent."], hold_after=2))
    await old.prompt("Two?")
    assert await old.tokens(2) == ["Half", " a"]

    new = await relay(CALL_SID, setup=False)
    await new.setup(sessionId=NEW_SESSION)
    closed = await old.ws.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"

    fake_anthropic.reply_with(["Third", " answer."])
    await new.prompt("Three?")
    assert "".join(f["token"] for f in await new.reply()) == "Third answer."
    # The model read the whole conversation, the cut reply as the caller heard it.
    history = [(m["role"], text_of(m)) for m in fake_anthropic.requests[-1]["messages"]]
    assert history[-3:] == [("user", "Two?"), ("assistant", "Half a"), ("user", "Three?")]
    await new.hang_up()
    old.closed = True

    assert await sync_to_async(stored)() == [
        (0, "user", "One?", False),
        (1, "assistant", "First answer.", False),
        (2, "user", "Two?", False),
        (3, "assistant", "Half a", True),
        (4, "user", "Three?", False),
        (5, "assistant", "Third answer.", False),
    ]
    call = await Call.objects.aget(call_sid=CALL_SID)
    assert (call.session_id, call.status) == (NEW_SESSION, Call.Status.COMPLETED)


async def test_a_socket_in_another_process_is_asked_over_the_channel_layer(
    default_persona, fake_anthropic, relay, settings
):
    """The request a new socket in another process sends (over Redis, to every server process):
    here the process holding the call answers its own request, through the real channel layer."""
    fake_anthropic.reply_with(["First", " answer."])
    old = await relay(CALL_SID)
    await old.prompt("One?")
    await old.reply()

    assert await handover.take_over_elsewhere(CALL_SID, NEW_SESSION)
    closed = await old.ws.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert handover.holder(CALL_SID) is None
    # Nobody holds it now: a second request goes unanswered.
    settings.HANDOVER_TIMEOUT_SECONDS = 0.3
    assert not await handover.take_over_elsewhere(CALL_SID, NEW_SESSION)
    old.closed = True
    call = await Call.objects.aget(call_sid=CALL_SID)
    assert call.status == Call.Status.IN_PROGRESS  # handed over, not ended
    assert [t[1:3] for t in await sync_to_async(stored)()] == [
        ("user", "One?"),
        ("assistant", "First answer."),
    ]
