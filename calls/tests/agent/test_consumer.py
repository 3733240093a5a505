"""The agent socket end to end: the real ASGI app and Postgres, a ConversationRelay socket playing
Twilio and an agent socket playing the customer's agent process, in the same test."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agents.models import AgentKey
from calls.agent import consumer as agent_consumer
from calls.agent.hub import agent_hub
from calls.models import Call, Turn
from calls.store.db import in_db_thread
from calls.tests.agent.conftest import CALL_SID, GREETING

pytestmark = [pytest.mark.django_db(transaction=True)]

OTHER_SID = "CA" + "b" * 32


def text_of(frames: list[dict]) -> str:
    return "".join(frame["token"] for frame in frames)


async def turns_of(call_sid: str) -> list[Turn]:
    return [turn async for turn in Turn.objects.filter(call__call_sid=call_sid).in_order()]


async def test_a_turn_streams_from_the_agent_to_the_caller_and_is_stored(relay, agent_socket, live_call):
    agent = await agent_socket()
    assert agent.hello["type"] == "hello" and agent.hello["protocol"] == 1
    assert agent.hello["agent_id"].startswith("agt_") and agent.hello["key_name"] == "langchain-test"
    caller = await relay()
    await caller.prompt("What time do you open on Saturday?")

    turn = await agent.expect("turn.end")
    assert turn["turn_id"].startswith("trn_")
    assert turn["call"] == {
        "call_sid": CALL_SID,
        "persona": live_call.persona.slug,
        "from": "+14155550198",
        "to": "+14155550100",
        "language": "en-US",
    }
    assert turn["text"] == "What time do you open on Saturday?"
    assert turn["history"] == [
        {"role": "assistant", "text": GREETING},
        {"role": "user", "text": "What time do you open on Saturday?"},
    ]
    await agent.write(turn["turn_id"], "We open", " at nine.")
    await agent.end(turn["turn_id"])
    frames = await caller.reply()
    assert text_of(frames) == "We open at nine." and frames[-1] == {"type": "text", "token": "", "last": True}
    await caller.hang_up()

    ended = await agent.expect("call.ended")
    assert ended == {"type": "call.ended", "call_sid": CALL_SID, "turn_id": None}
    _greeting, user, reply = await turns_of(CALL_SID)
    assert (user.role, user.text) == ("user", "What time do you open on Saturday?")
    assert (reply.role, reply.text, reply.interrupted) == ("assistant", "We open at nine.", False)
    # The key's last use is stamped off the handshake's path.
    await asyncio.gather(*agent_consumer._touches)
    assert (await AgentKey.objects.aget()).last_used_at is not None


async def test_the_personas_speech_filters_apply_to_the_agents_text(relay, agent_socket, live_call):
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("When?")
    turn = await agent.expect("turn.end")
    await agent.write(turn["turn_id"], "**We open**", " at *nine*.")
    await agent.end(turn["turn_id"])
    assert text_of(await caller.reply()) == "We open at nine."
    await caller.hang_up()
    reply = (await turns_of(CALL_SID))[-1]
    assert reply.generated_text == "**We open** at *nine*."  # as any model's reply is stored


async def test_a_barge_in_tells_the_agent_what_was_heard_and_drops_its_later_writes(
    relay, agent_socket, live_call
):
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("When are you open?")
    turn = await agent.expect("turn.end")
    await agent.write(turn["turn_id"], "We open", " at nine", " on Saturdays")
    assert "".join(await caller.tokens(3)) == "We open at nine on Saturdays"

    await caller.interrupt("We open at 9", duration_ms=1200)
    interrupted = await agent.expect("bot.interrupted")
    assert interrupted == {"type": "bot.interrupted", "turn_id": turn["turn_id"], "heard": "We open at nine"}
    await agent.write(turn["turn_id"], " and Sundays.")
    await agent.end(turn["turn_id"])
    # history.get is answered after the writes before it were handled: they were dropped.
    answer = await agent.history(CALL_SID)
    assert answer["history"] == [
        {"role": "assistant", "text": GREETING},
        {"role": "user", "text": "When are you open?"},
        {"role": "assistant", "text": "We open at nine"},
    ]
    assert agent_hub().dropped == 2
    assert await caller.ws.receive_nothing(0.1)  # not one more token reached the caller
    await caller.hang_up()

    reply = (await turns_of(CALL_SID))[-1]
    assert reply.interrupted and reply.text == "We open at nine"
    assert reply.generated_text == "We open at nine on Saturdays"


async def test_a_second_prompt_voids_the_turn_and_sends_the_longer_one(relay, agent_socket, live_call):
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("When are you open")
    first = await agent.expect("turn.end")
    await caller.prompt("on Sunday?")
    assert await agent.expect("turn.continued") == {"type": "turn.continued", "turn_id": first["turn_id"]}
    second = await agent.expect("turn.end")
    assert second["turn_id"] != first["turn_id"]
    assert second["text"] == "When are you open\non Sunday?"
    await agent.write(first["turn_id"], "Stale.")  # dropped: that turn is void
    await agent.write(second["turn_id"], "We rest on Sundays.")
    await agent.end(second["turn_id"])
    assert text_of(await caller.reply()) == "We rest on Sundays."
    await caller.hang_up()
    assert agent_hub().dropped == 1


async def test_a_hang_up_mid_reply_tells_the_agent_the_call_ended(relay, agent_socket, live_call):
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("Hello?")
    turn = await agent.expect("turn.end")
    await agent.write(turn["turn_id"], "Hi", " there")
    await caller.tokens(2)
    await caller.hang_up()
    assert await agent.expect("call.ended") == {
        "type": "call.ended",
        "call_sid": CALL_SID,
        "turn_id": turn["turn_id"],
    }
    assert agent_hub().calls == {}  # the call no longer counts against the agent
    reply = (await turns_of(CALL_SID))[-1]
    assert reply.generated_text == "Hi there"


async def test_an_agent_that_disconnects_mid_reply_ends_it_and_what_was_sent_is_kept(
    relay, agent_socket, live_call
):
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("Hello?")
    turn = await agent.expect("turn.end")
    await agent.write(turn["turn_id"], "Hi", " there")
    await caller.tokens(2)
    await agent.disconnect()
    assert (await caller.reply()) == [{"type": "text", "token": "", "last": True}]
    await caller.hang_up()
    reply = (await turns_of(CALL_SID))[-1]
    assert (reply.text, reply.generated_text, reply.interrupted) == ("Hi there", "Hi there", False)


async def test_a_turn_its_agent_left_unanswered_goes_to_another_agent(relay, agent_socket, live_call):
    first = await agent_socket()
    caller = await relay()
    await caller.prompt("Hello?")
    turn = await first.expect("turn.end")
    second = await agent_socket()  # connects while the first still owes the reply
    await first.disconnect()  # before writing a word of it
    resent = await second.expect("turn.end")
    assert (resent["turn_id"], resent["text"], resent["history"]) == (
        turn["turn_id"],
        turn["text"],
        turn["history"],
    )
    await second.write(resent["turn_id"], "Hi, second agent here.")
    await second.end(resent["turn_id"])
    assert text_of(await caller.reply()) == "Hi, second agent here."
    await caller.hang_up()
    reply = (await turns_of(CALL_SID))[-1]
    assert (reply.role, reply.text) == ("assistant", "Hi, second agent here.")


async def test_with_no_agent_connected_the_caller_hears_the_fallback_and_the_call_notes_it(relay, live_call):
    fallback = live_call.persona.fallback_line
    caller = await relay()
    await caller.prompt("Hello?")
    assert text_of(await caller.reply()) == fallback
    await caller.hang_up()
    await live_call.arefresh_from_db()
    [error] = live_call.metadata["errors"]
    assert error["source"] == "model" and "no agent connected" in error["error"]
    reply = (await turns_of(CALL_SID))[-1]
    assert reply.text == fallback


async def test_an_agent_that_stalls_is_cut_off_and_told(relay, agent_socket, live_call):
    live_call.persona.first_token_timeout_seconds = 0.5
    await live_call.persona.asave()
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("Hello?")
    turn = await agent.expect("turn.end")
    assert text_of(await caller.reply()) == live_call.persona.fallback_line  # nothing came in 0.5 s
    voided = await agent.expect("bot.interrupted")
    assert voided == {"type": "bot.interrupted", "turn_id": turn["turn_id"], "heard": ""}
    await agent.write(turn["turn_id"], "Too late.")
    await agent.history(CALL_SID)
    assert agent_hub().dropped == 1
    await caller.hang_up()
    await live_call.arefresh_from_db()
    [error] = live_call.metadata["errors"]
    assert "first token" in error["error"]


@pytest.mark.parametrize("header", [b"Bearer sbk_not-a-key", b"Bearer ", b"Basic abc", None])
async def test_a_handshake_without_a_live_key_is_refused(agent_socket, header):
    assert await agent_socket(None, header=header) is None


async def test_a_revoked_key_is_refused(agent_socket, agent_key):
    assert await in_db_thread(AgentKey.objects.all().revoke) == 1
    assert await agent_socket(agent_key) is None


async def test_revoking_a_key_closes_the_sockets_already_open_with_it(agent_socket, agent_key, settings):
    settings.AGENT_KEY_RECHECK_SECONDS = 0.05
    agent = await agent_socket()
    assert len(agent_hub().agents) == 1
    await in_db_thread(AgentKey.objects.all().revoke)  # staff revoke it in the admin
    assert await agent.ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    agent.closed = True


async def test_malformed_agent_frames_are_dropped_counted_and_the_socket_goes_on(agent_socket, caplog):
    agent = await agent_socket()
    caplog.set_level(logging.DEBUG, logger="calls.socket")
    bad = [
        "not json",
        "[1, 2]",
        '{"type": "reply.shout", "turn_id": "t"}',
        '{"type": "reply.write", "turn_id": "t"}',
        '{"type": "history.get", "request_id": 5, "call_sid": "CA1"}',
        '{"type": "reply.write", "turn_id": "t", "text": "' + "x" * 70_000 + '"}',
    ]
    for frame in bad:
        await agent.ws.send_to(text_data=frame)
    answer = await agent.history("CA-unknown")
    assert answer["type"] == "error" and "CA-unknown" in answer["message"]
    ignored = [r for r in caplog.records if "agent frame ignored" in r.getMessage()]
    # Each one counted; the first few of an interval are warnings, the rest DEBUG (a flood stays quiet).
    assert [r.levelno for r in ignored] == [logging.WARNING] * 5 + [logging.DEBUG]
    assert "(6 so far on this socket)" in ignored[-1].getMessage()
    assert "over the 65536 limit" in ignored[-1].getMessage()


async def test_calls_are_spread_over_the_agents_and_stay_with_theirs(relay, agent_socket, live_call):
    first, second = await agent_socket(), await agent_socket()
    one, two = await relay(CALL_SID), await relay(OTHER_SID)
    await one.prompt("I am call one")
    turn_one = await first.expect("turn.end")
    await two.prompt("I am call two")
    turn_two = await second.expect("turn.end")  # the least busy agent
    assert (turn_one["call"]["call_sid"], turn_two["call"]["call_sid"]) == (CALL_SID, OTHER_SID)
    for agent, turn, caller in ((first, turn_one, one), (second, turn_two, two)):
        await agent.write(turn["turn_id"], "Noted.")
        await agent.end(turn["turn_id"])
        assert text_of(await caller.reply()) == "Noted."
    # Sticky: call two's next turn goes to its agent, even though both now serve one call.
    await two.prompt("Me again")
    again = await second.expect("turn.end")
    assert again["call"]["call_sid"] == OTHER_SID
    assert await first.ws.receive_nothing(0.1)
    await second.write(again["turn_id"], "Yes?")
    await second.end(again["turn_id"])
    assert text_of(await two.reply()) == "Yes?"
    # Its agent leaves: the next turn goes to the other one.
    await second.disconnect()
    await two.prompt("Anyone there?")
    moved = await first.expect("turn.end")
    assert moved["call"]["call_sid"] == OTHER_SID and moved["history"][-1]["text"].endswith("Anyone there?")
    await first.write(moved["turn_id"], "Still here.")
    await first.end(moved["turn_id"])
    assert text_of(await two.reply()) == "Still here."
    await one.hang_up()
    await two.hang_up()
    assert {(await first.expect("call.ended"))["call_sid"] for _ in range(2)} == {CALL_SID, OTHER_SID}


async def test_history_is_only_given_for_the_agents_own_live_calls(relay, agent_socket, live_call):
    agent, other = await agent_socket(), await agent_socket()
    caller = await relay()
    await caller.prompt("Hi")
    turn = await agent.expect("turn.end")
    answer = await other.history(CALL_SID)
    assert answer["type"] == "error"
    answer = await agent.history(CALL_SID, "r7")
    assert answer == {
        "type": "history",
        "request_id": "r7",
        "call_sid": CALL_SID,
        "history": turn["history"],
    }
    await caller.hang_up()
    await agent.expect("call.ended")
    assert (await agent.history(CALL_SID))["type"] == "error"  # over: no longer live


async def test_a_server_side_persona_is_untouched_by_connected_agents(
    relay, agent_socket, live_call, fake_anthropic
):
    live_call.persona.llm_provider = "anthropic"
    await live_call.persona.asave()
    agent = await agent_socket()
    fake_anthropic.reply_with(["Model", " reply."])
    caller = await relay()
    await caller.prompt("Hello?")
    assert text_of(await caller.reply()) == "Model reply."
    await caller.hang_up()
    assert await agent.ws.receive_nothing(0.1)
    assert await Call.objects.filter(call_sid=CALL_SID).aexists()


async def test_an_agent_that_leaves_before_replying_gives_the_caller_the_fallback_line(
    relay, agent_socket, live_call
):
    fallback = live_call.persona.fallback_line
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("Hello?")
    await agent.expect("turn.end")
    await agent.disconnect()
    assert text_of(await caller.reply()) == fallback
    await caller.hang_up()
    await live_call.arefresh_from_db()
    [error] = live_call.metadata["errors"]
    assert "disconnected before replying" in error["error"]


async def test_a_barge_in_after_the_reply_streamed_in_full_is_told_too(relay, agent_socket, live_call):
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("When are you open?")
    turn = await agent.expect("turn.end")
    await agent.write(turn["turn_id"], "We open at nine", " on Saturdays.")
    await agent.end(turn["turn_id"])
    await caller.reply()
    await caller.interrupt("We open at 9", duration_ms=1200)  # Twilio was still speaking it
    assert await agent.expect("bot.interrupted") == {
        "type": "bot.interrupted",
        "turn_id": turn["turn_id"],
        "heard": "We open at nine",
    }
    await caller.interrupt("We", duration_ms=100)  # told once: that turn is settled
    await caller.prompt("Thanks")
    assert (await agent.expect("turn.end"))["history"][-2:] == [
        {"role": "assistant", "text": "We open at nine"},
        {"role": "user", "text": "Thanks"},
    ]


async def test_an_agent_that_goes_quiet_mid_reply_is_cut_at_the_gap_limit(relay, agent_socket, live_call):
    live_call.persona.token_gap_timeout_seconds = 0.5
    await live_call.persona.asave()
    fallback = live_call.persona.fallback_line
    agent = await agent_socket()
    caller = await relay()
    await caller.prompt("Hello?")
    turn = await agent.expect("turn.end")
    await agent.write(turn["turn_id"], "Let me", " check")
    assert text_of(await caller.reply()) == "Let me check"  # its own talk cycle, then the line
    assert text_of(await caller.reply()) == fallback
    assert await agent.expect("bot.interrupted") == {
        "type": "bot.interrupted",
        "turn_id": turn["turn_id"],
        "heard": "Let me check",
    }
    await caller.hang_up()
    await live_call.arefresh_from_db()
    [error] = live_call.metadata["errors"]
    assert "no token for 0.5 s" in error["error"]
