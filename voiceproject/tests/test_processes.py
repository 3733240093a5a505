"""Several server processes, as production runs them: a persona edit reaches the calls of every
process within a second (the change feed, agents/persona_feed.py), new calls and live ones."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agents.models import Persona
from calls.models import Call, Turn
from calls.simulator.relay import (
    PhoneCall,
    RelayTwiml,
    new_sid,
    parse_relay_twiml,
    post_voice_webhook,
    twilio_signature,
)
from fakes.anthropic_server import FakeAnthropic
from fakes.servers import SERVER_TWILIO_TOKEN, ServerProcess

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN_SECONDS = 1.0  # the bound for an edit to reach every process
CALLED = "+14155550100"


@pytest.fixture
def anthropic():
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


async def ring(server: ServerProcess) -> tuple[PhoneCall, RelayTwiml]:
    """A new call to `server`'s voice webhook, as Twilio places it."""
    call = PhoneCall(from_number="+14155550198", to_number=CALLED)
    twiml = await asyncio.to_thread(
        post_voice_webhook, call, base_url=server.url, public_base_url=server.url, token=SERVER_TWILIO_TOKEN
    )
    return call, parse_relay_twiml(twiml)


async def greeting_within(server: ServerProcess, greeting: str, deadline: float) -> float:
    """Place calls until one is greeted with `greeting`; the seconds left before `deadline`."""
    while True:
        _, twiml = await ring(server)
        if twiml.welcome_greeting == greeting:
            return deadline - time.monotonic()
        assert time.monotonic() < deadline, f"{server.url} still greets {twiml.welcome_greeting!r}"
        await asyncio.sleep(0.05)


async def reply(ws) -> str:
    """The agent's reply to the prompt just sent, up to the frame that closes it."""
    text = ""
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "text":
                text += frame["token"]
                if frame.get("last"):
                    return text


async def edit(persona: Persona, **fields: str) -> float:
    """Save `persona` here, as the admin in any process does; when it committed."""
    for name, value in fields.items():
        setattr(persona, name, value)
    await sync_to_async(persona.save)()
    return time.monotonic()


async def test_a_persona_edit_reaches_new_calls_on_every_process_within_a_second(
    default_persona, server_processes, anthropic
):
    a, b = server_processes(2, ANTHROPIC_API_KEY="test-anthropic-key", ANTHROPIC_BASE_URL=anthropic.url)
    for server in (a, b):  # each process now holds the persona, for its 30 s TTL
        _, twiml = await ring(server)
        assert twiml.welcome_greeting == default_persona.welcome_greeting

    edited = await edit(default_persona, welcome_greeting="Thanks for calling the new line.")
    for server in (a, b):
        await greeting_within(server, "Thanks for calling the new line.", edited + WITHIN_SECONDS)


async def test_a_persona_edit_reaches_a_live_call_on_another_process(
    default_persona, server_processes, anthropic
):
    _, b = server_processes(2, ANTHROPIC_API_KEY="test-anthropic-key", ANTHROPIC_BASE_URL=anthropic.url)
    call, twiml = await ring(b)
    headers = {"X-Twilio-Signature": twilio_signature(SERVER_TWILIO_TOKEN, twiml.url)}
    async with connect(twiml.url, additional_headers=headers, proxy=None) as ws:
        await ws.send(json.dumps(call.setup_message(twiml.parameters)))
        await ws.send(json.dumps({"type": "prompt", "voicePrompt": "Hi", "lang": "en-US", "last": True}))
        assert await reply(ws) == "Hello there!"
        assert anthropic.requests[-1]["system"].startswith(default_persona.system_prompt)

        # Saved in another process (this one): B hears of it on Redis and reloads what it holds.
        edited = await edit(default_persona, system_prompt="You are the night shift.")
        while time.monotonic() < edited + WITHIN_SECONDS:  # B reloads what its live call holds
            await ws.send(
                json.dumps({"type": "prompt", "voicePrompt": "Again", "lang": "en-US", "last": True})
            )
            await reply(ws)
            if anthropic.requests[-1]["system"].startswith("You are the night shift."):
                return
        pytest.fail(f"the live call on B still prompts with {anthropic.requests[-1]['system']!r}")


async def test_a_reconnect_that_lands_on_another_process_takes_the_call_over(
    default_persona, server_processes, anthropic
):
    """Twilio reconnects the call while its old socket on A is still open, and the new socket
    lands on B: A stops and flushes, B goes on with the whole history (calls/engine/handover.py)."""
    a, b = server_processes(2, ANTHROPIC_API_KEY="test-anthropic-key", ANTHROPIC_BASE_URL=anthropic.url)
    call, twiml = await ring(a)
    old_headers = {"X-Twilio-Signature": twilio_signature(SERVER_TWILIO_TOKEN, twiml.url)}
    async with connect(twiml.url, additional_headers=old_headers, proxy=None) as old:
        await old.send(json.dumps(call.setup_message(twiml.parameters)))
        await old.send(json.dumps({"type": "prompt", "voicePrompt": "One?", "lang": "en-US", "last": True}))
        assert await reply(old) == "Hello there!"

        moved = replace(call, session_id=new_sid("VX"))
        new_url = b.ws_url("/ws/relay/")
        new_headers = {"X-Twilio-Signature": twilio_signature(SERVER_TWILIO_TOKEN, new_url)}
        async with connect(new_url, additional_headers=new_headers, proxy=None) as new:
            await new.send(json.dumps(moved.setup_message(twiml.parameters)))
            with pytest.raises(ConnectionClosed):  # A hands the call over and hangs up
                async with asyncio.timeout(10):
                    await old.recv()
            await new.send(
                json.dumps({"type": "prompt", "voicePrompt": "Two?", "lang": "en-US", "last": True})
            )
            assert await reply(new) == "Hello there!"
            history = [(m["role"], m["content"]) for m in anthropic.requests[-1]["messages"]]
            assert history[-3:] == [("user", "One?"), ("assistant", "Hello there!"), ("user", "Two?")]

    turns = await until_ended(call.call_sid)
    assert turns == [
        (0, "assistant", default_persona.welcome_greeting),
        (1, "user", "One?"),
        (2, "assistant", "Hello there!"),
        (3, "user", "Two?"),
        (4, "assistant", "Hello there!"),
    ]
    stored = await Call.objects.aget(call_sid=call.call_sid)
    assert stored.session_id == moved.session_id
    assert "taken over from another process" in b.log_text()
    assert "another process's socket takes the call over" in a.log_text()


async def until_ended(call_sid: str, timeout: float = 15.0) -> list[tuple]:
    """The call's turns once a server has ended it (its last writes applied before)."""
    async with asyncio.timeout(timeout):
        # Another process writes it: there is nothing here to await.
        while not await Call.objects.filter(call_sid=call_sid, ended_at__isnull=False).aexists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return [
        t
        async for t in Turn.objects.filter(call__call_sid=call_sid)
        .in_order()
        .values_list("sequence", "role", "text")
    ]
