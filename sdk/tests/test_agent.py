"""The agent over a real socket: handshake, turns, handler failures, reconnects, closing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from switchboard_agent import Agent, AuthenticationError, Backoff, Call, Turn

from .fake_switchboard import WAIT, AgentSession, FakeSwitchboard

RunAgent = Callable[[Agent], Awaitable[AgentSession]]


async def test_sends_the_api_key_and_reads_hello(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        await call.reply_stream(turn).write("hi")

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    await session.frames_until("reply.end", "trn_1")  # the hello came first on the same socket

    (headers,) = switchboard_server.handshakes
    assert headers["Authorization"] == "Bearer sb_test_key"
    assert (agent.agent_id, agent.key_name, agent.connected) == ("agt_test", "tests", True)


async def test_a_refused_key_stops_run_without_retrying(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent]
) -> None:
    agent = new_agent(api_key="sb_revoked")

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None: ...

    with pytest.raises(AuthenticationError, match="HTTP 403") as refused:
        await asyncio.wait_for(agent.run(), WAIT)
    assert refused.value.status == 403
    assert len(switchboard_server.handshakes) == 1
    assert "sb_revoked" not in str(refused.value)


async def test_a_turn_streams_its_writes_in_order_then_ends(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    seen: list[tuple[Turn, Call]] = []

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        seen.append((turn, call))
        stream = call.reply_stream(turn)
        for token in ["We open ", "at nine ", "on Saturday."]:
            await stream.write(token)
        await stream.end()

    session = await run_agent(agent)
    history = [{"role": "assistant", "text": "Hello, how can I help?"}, {"role": "user", "text": "When?"}]
    await session.turn_end("trn_1", "When?", history=history)
    frames = await session.frames_until("reply.end", "trn_1")

    assert frames == [
        {"type": "reply.write", "turn_id": "trn_1", "text": "We open "},
        {"type": "reply.write", "turn_id": "trn_1", "text": "at nine "},
        {"type": "reply.write", "turn_id": "trn_1", "text": "on Saturday."},
        {"type": "reply.end", "turn_id": "trn_1"},
    ]
    ((turn, call),) = seen
    assert (turn.id, turn.text, turn.call_sid) == ("trn_1", "When?", "CA1")
    assert [(m.role, m.text) for m in turn.history] == [
        ("assistant", "Hello, how can I help?"),
        ("user", "When?"),
    ]
    assert (call.call_sid, call.persona, call.from_number, call.to_number, call.language) == (
        "CA1",
        "receptionist",
        "+14155550100",
        "+14155550199",
        "en-US",
    )
    assert switchboard_server.replies["trn_1"].ended and not switchboard_server.dropped


async def test_a_slow_handler_does_not_hold_other_turns(
    new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    release = asyncio.Event()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        async with call.reply_stream(turn) as stream:
            if call.call_sid == "CA_slow":
                await release.wait()
            await stream.write(f"reply to {call.call_sid}")

    session = await run_agent(agent)
    await session.turn_end("trn_slow", call_sid="CA_slow")
    await session.turn_end("trn_fast", call_sid="CA_fast")
    fast = await session.frames_until("reply.end", "trn_fast")
    assert [f["turn_id"] for f in fast] == ["trn_fast", "trn_fast"]  # nothing from the slow one yet

    release.set()
    slow = await session.frames_until("reply.end", "trn_slow")
    assert slow[0] == {"type": "reply.write", "turn_id": "trn_slow", "text": "reply to CA_slow"}


async def test_a_handler_that_raises_has_its_reply_ended_and_the_agent_keeps_serving(
    switchboard_server: FakeSwitchboard,
    new_agent: Callable[..., Agent],
    run_agent: RunAgent,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = new_agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        stream = call.reply_stream(turn)
        await stream.write(f"answer to {turn.text}")
        if turn.text == "boom":
            raise RuntimeError("the model is down")
        await stream.end()

    session = await run_agent(agent)
    with caplog.at_level(logging.ERROR, logger="switchboard_agent"):
        await session.turn_end("trn_1", "boom")
        assert await session.frames_until("reply.end", "trn_1") == [
            {"type": "reply.write", "turn_id": "trn_1", "text": "answer to boom"},
            {"type": "reply.end", "turn_id": "trn_1"},
        ]
    (record,) = [r for r in caplog.records if r.name == "switchboard_agent"]
    assert "trn_1" in record.getMessage() and record.exc_info is not None
    assert str(record.exc_info[1]) == "the model is down"

    await session.turn_end("trn_2", "fine")
    assert (await session.frames_until("reply.end", "trn_2"))[0]["text"] == "answer to fine"


async def test_a_drop_mid_reply_aborts_it_and_the_agent_reconnects_and_keeps_serving(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    release = asyncio.Event()
    streams = {}
    finished: asyncio.Queue[str] = asyncio.Queue()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        async with call.reply_stream(turn) as stream:
            streams[turn.id] = stream
            await stream.write("first ")
            if turn.id == "trn_1":
                await release.wait()
                await stream.write("second")  # after the drop: a no-op
        await finished.put(turn.id)

    first = await run_agent(agent)
    await first.turn_end("trn_1")
    assert (await first.next_frame())["text"] == "first "
    first.drop()

    second = await switchboard_server.next_session()  # reconnected after a backoff delay
    assert streams["trn_1"].aborted and streams["trn_1"].abort_reason == "disconnected"
    release.set()
    assert await asyncio.wait_for(finished.get(), WAIT) == "trn_1"

    await second.turn_end("trn_2")
    frames = await second.frames_until("reply.end", "trn_2")
    assert [f["turn_id"] for f in frames] == ["trn_2", "trn_2"]  # nothing of trn_1 on the new socket
    assert switchboard_server.replies["trn_1"].writes == ["first "]
    assert len(switchboard_server.handshakes) == 2


async def test_refused_handshakes_are_retried_with_growing_jittered_delays(
    switchboard_server: FakeSwitchboard,
    new_agent: Callable[..., Agent],
    run_agent: RunAgent,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = Backoff(initial=0.01, maximum=0.2)
    agent = new_agent(backoff=backoff)

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None: ...

    switchboard_server.refuse_next = 3  # a server that is restarting
    with caplog.at_level(logging.WARNING, logger="switchboard_agent"):
        await run_agent(agent)

    assert len(switchboard_server.handshakes) == 4
    delays = [
        float(r.args[0])  # type: ignore[arg-type]  # the %.2f argument, unrounded
        for r in caplog.records
        if r.getMessage().startswith("reconnecting in") and isinstance(r.args, tuple)
    ]
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        assert backoff.ceiling(attempt) / 2 <= delay <= backoff.ceiling(attempt)
    assert delays == sorted(delays)


async def test_malformed_frames_are_dropped_and_counted(
    new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        await call.reply_stream(turn).write("still here")

    session = await run_agent(agent)
    await session.send("not json")
    await session.send('{"no": "type"}')
    await session.send('{"type": "turn.end", "turn_id": "trn_x", "call": "CA1", "text": "hi"}')
    await session.send('{"type": "turn.end", "turn_id": "trn_y", "call": {"call_sid": "CA1"}, "text": 5}')
    await session.send('{"type": "something.new", "from": "a newer server"}')  # ignored, not malformed
    await session.turn_end("trn_1")
    await session.turn_end("trn_1")  # sent twice: answered once
    await session.frames_until("reply.end", "trn_1")
    await session.turn_end("trn_2")
    await session.frames_until("reply.end", "trn_2")

    assert [(f["type"], f["turn_id"]) for f in session.received] == [
        ("reply.write", "trn_1"),
        ("reply.end", "trn_1"),
        ("reply.write", "trn_2"),
        ("reply.end", "trn_2"),
    ]
    assert agent.malformed_frames == 4


async def test_close_stops_run_and_cancels_handlers_past_the_grace(
    new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent(close_grace=0.05)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @agent.on("turn.end")
    async def stuck(turn: Turn, call: Call) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # ignores `aborted`: only cancelling stops it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.wait_for(agent.close(), WAIT)

    assert cancelled.is_set() and not agent.connected
    await asyncio.wait_for(session.closed.wait(), WAIT)


def test_the_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_AGENT_URL", "wss://switchboard.example/ws/agent/")
    monkeypatch.setenv("SWITCHBOARD_API_KEY", "sb_env_key")
    agent = Agent()
    assert agent.url == "wss://switchboard.example/ws/agent/"
    assert Agent(url="ws://127.0.0.1:1/ws/agent/").url == "ws://127.0.0.1:1/ws/agent/"

    monkeypatch.delenv("SWITCHBOARD_API_KEY")
    with pytest.raises(ValueError, match="SWITCHBOARD_API_KEY"):
        Agent()
    with pytest.raises(ValueError, match="wss://"):
        Agent(url="https://switchboard.example/ws/agent/", api_key="k")


def test_handlers_are_checked_when_registered() -> None:
    agent = Agent(url="ws://127.0.0.1:1/ws/agent/", api_key="k")
    with pytest.raises(ValueError, match="unknown event"):
        agent.on("turn.started")  # type: ignore[call-overload]

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        agent.on("turn.end")(reply)
    with pytest.raises(TypeError, match="async function"):

        def not_async(call: Call) -> None: ...

        agent.on("call.ended")(not_async)  # type: ignore[type-var]


async def test_run_needs_a_turn_handler() -> None:
    with pytest.raises(RuntimeError, match=r"turn\.end"):
        await Agent(url="ws://127.0.0.1:1/ws/agent/", api_key="k").run()
