"""The call: its history from the server, and one object per call across its turns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from switchboard_agent import Agent, Call, HistoryError, Message, NotConnectedError, Turn

from .fake_switchboard import WAIT, AgentSession, FakeSwitchboard

RunAgent = Callable[[Agent], Awaitable[AgentSession]]
Outcome = list[Message] | BaseException


def history_agent(
    new_agent: Callable[..., Agent], outcomes: asyncio.Queue[Outcome], **options: float
) -> Agent:
    agent = new_agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        try:
            await outcomes.put(await call.get_history(**options))
        except Exception as error:
            await outcomes.put(error)

    return agent


async def test_get_history_returns_the_servers_answer(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    switchboard_server.histories["CA1"] = [
        {"role": "assistant", "text": "Hello, how can I help?"},
        {"role": "user", "text": "What time do you open?"},
        {"role": "assistant", "text": "We open at"},  # cut where the caller interrupted
    ]
    session = await run_agent(history_agent(new_agent, outcomes))
    await session.turn_end("trn_1")

    request = await session.next_frame()
    assert request == {"type": "history.get", "request_id": request["request_id"], "call_sid": "CA1"}
    assert await asyncio.wait_for(outcomes.get(), WAIT) == [
        Message("assistant", "Hello, how can I help?"),
        Message("user", "What time do you open?"),
        Message("assistant", "We open at"),
    ]


async def test_get_history_of_a_call_the_server_does_not_know_raises(
    new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    session = await run_agent(history_agent(new_agent, outcomes))
    await session.turn_end("trn_1", call_sid="CA_gone")
    error = await asyncio.wait_for(outcomes.get(), WAIT)
    assert isinstance(error, HistoryError) and str(error) == "unknown call"


async def test_get_history_times_out_when_the_server_does_not_answer(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    switchboard_server.answer_history = False
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    session = await run_agent(history_agent(new_agent, outcomes, timeout=0.05))
    await session.turn_end("trn_1")
    assert isinstance(await asyncio.wait_for(outcomes.get(), WAIT), TimeoutError)


async def test_get_history_fails_when_the_connection_drops_while_waiting(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    switchboard_server.answer_history = False
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    session = await run_agent(history_agent(new_agent, outcomes))  # the default 5 s timeout
    await session.turn_end("trn_1")
    assert (await session.next_frame())["type"] == "history.get"
    session.drop()
    assert isinstance(await asyncio.wait_for(outcomes.get(), WAIT), NotConnectedError)
    await switchboard_server.next_session()  # and it came back


async def test_one_call_object_carries_state_and_follows_the_language(
    new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    seen: asyncio.Queue[tuple[Call, str, int]] = asyncio.Queue()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        call.state["turns"] = call.state.get("turns", 0) + 1
        await seen.put((call, call.language, call.state["turns"]))

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    first, lang1, n1 = await asyncio.wait_for(seen.get(), WAIT)
    await session.turn_end("trn_2", language="es-ES")  # after a switch_language tool call
    second, lang2, n2 = await asyncio.wait_for(seen.get(), WAIT)
    assert first is second
    assert (lang1, n1, lang2, n2) == ("en-US", 1, "es-ES", 2)


def test_a_turn_cannot_be_answered_through_another_call() -> None:
    call = Call(call_sid="CA1")
    with pytest.raises(ValueError, match="belongs to call CA2"):
        call.reply_stream(Turn(id="trn_1", call_sid="CA2", text="hi"))


def test_a_malformed_history_is_refused() -> None:
    assert Message.parse_history([{"role": "user", "text": "hi"}]) == (Message("user", "hi"),)
    for bad in [None, [{"text": "no role"}], [{"role": "user"}], ["text"]]:
        with pytest.raises(ValueError):
            Message.parse_history(bad)
