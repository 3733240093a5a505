"""A relay `setup` whose identifiers are not Twilio's is refused as a malformed frame: nothing is
bound or stored for it, and the socket is closed (Twilio's <Connect action> then takes over)."""

from __future__ import annotations

import logging

import pytest

from calls.models import Call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("call_sid", ["CA" + "f" * 98, "CA123", "CA" + "z" * 32])
async def test_a_setup_with_a_malformed_call_sid_binds_nothing(relay, default_persona, caplog, call_sid):
    with caplog.at_level(logging.WARNING, logger="calls.socket"):
        caller = await relay(call_sid)
        closed = await caller.ws.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1008}
    caller.closed = True
    refused = [r.getMessage() for r in caplog.records if "relay frame ignored" in r.getMessage()]
    assert len(refused) == 1 and "setup: callSid" in refused[0] and "is not CA + 32 hex digits" in refused[0]
    assert not await Call.objects.aexists()


async def test_a_setup_with_a_malformed_account_sid_binds_nothing(relay, default_persona, caplog):
    caller = await relay("CA" + "a" * 32, setup=False)
    with caplog.at_level(logging.WARNING, logger="calls.socket"):
        await caller.setup(accountSid="ACbench")
        closed = await caller.ws.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1008}
    caller.closed = True
    assert "setup: accountSid 'ACbench' is not AC + 32 hex digits" in caplog.text
    assert not await Call.objects.aexists()
