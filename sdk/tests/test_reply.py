"""The reply stream over a real socket: writes, end, and the three ways a reply becomes void."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from switchboard_agent import Agent, Call, ReplyStream, Turn
from switchboard_agent.reply import MAX_WRITE_CHARS

from .fake_switchboard import MAX_FRAME, WAIT, AgentSession, FakeSwitchboard

RunAgent = Callable[[Agent], Awaitable[AgentSession]]


class Model:
    """Tokens the test hands out one by one, as a streaming LLM would."""

    def __init__(self) -> None:
        self.tokens: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def stream(self) -> AsyncIterator[str]:
        try:
            while (token := await self.tokens.get()) is not None:
                yield token
        finally:
            self.closed.set()


async def test_bot_interrupted_aborts_the_reply_and_stops_the_handlers_loop(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    model = Model()
    streams: dict[str, ReplyStream] = {}
    interrupted: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    done = asyncio.Event()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        stream = streams[turn.id] = call.reply_stream(turn)
        try:
            async for token in model.stream():
                if stream.aborted:
                    break
                await stream.write(token)
        finally:
            await stream.end()
            done.set()

    @agent.on("bot.interrupted")
    async def on_interrupted(turn: Turn, call: Call, heard: str) -> None:
        await interrupted.put((turn.id, heard))

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    await model.tokens.put("We open ")
    assert (await session.next_frame())["text"] == "We open "

    await session.void("trn_1", "bot.interrupted", heard="We open")
    assert await asyncio.wait_for(interrupted.get(), WAIT) == ("trn_1", "We open")
    assert streams["trn_1"].aborted
    await model.tokens.put("at nine.")  # the next token arrives after the interruption
    await asyncio.wait_for(done.wait(), WAIT)

    stream = streams["trn_1"]
    assert (stream.abort_reason, stream.heard, stream.text) == ("bot.interrupted", "We open", "We open ")
    await session.turn_end("trn_2")  # a later reply marks where trn_1's frames must have stopped
    await model.tokens.put(None)
    await session.frames_until("reply.end", "trn_2")
    assert [f for f in session.received if f["turn_id"] == "trn_1"] == [
        {"type": "reply.write", "turn_id": "trn_1", "text": "We open "}
    ]
    assert not switchboard_server.dropped  # no write and no reply.end after the interruption


async def test_turn_continued_voids_the_first_reply_and_the_longer_turn_is_answered(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    gate = asyncio.Event()
    continued: asyncio.Queue[str] = asyncio.Queue()
    finished: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        if turn.id == "trn_1":
            await gate.wait()  # still thinking (fetching history, first token) when voided
        async with call.reply_stream(turn) as stream:
            await stream.write(f"answer to {turn.text}")
            await finished.put((turn.id, stream.aborted))

    @agent.on("turn.continued")
    async def on_continued(turn: Turn, call: Call) -> None:
        await continued.put(turn.id)

    session = await run_agent(agent)
    await session.turn_end("trn_1", "What time")
    await session.void("trn_1", "turn.continued")
    assert await asyncio.wait_for(continued.get(), WAIT) == "trn_1"
    await session.turn_end("trn_2", "What time do you open?")
    gate.set()

    results = {await asyncio.wait_for(finished.get(), WAIT) for _ in range(2)}
    assert results == {("trn_1", True), ("trn_2", False)}  # trn_1's stream came out already void
    frames = await session.frames_until("reply.end", "trn_2")
    assert frames == [
        {"type": "reply.write", "turn_id": "trn_2", "text": "answer to What time do you open?"},
        {"type": "reply.end", "turn_id": "trn_2"},
    ]
    assert session.received == frames and not switchboard_server.dropped  # nothing at all for trn_1


async def test_call_ended_mid_reply_aborts_it_and_tells_the_handler(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    model = Model()
    streams: dict[str, ReplyStream] = {}
    ended: asyncio.Queue[Call] = asyncio.Queue()
    completed: asyncio.Queue[bool] = asyncio.Queue()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        async with call.reply_stream(turn) as stream:
            streams[turn.id] = stream
            await completed.put(await stream.write_from(model.stream()))

    @agent.on("call.ended")
    async def on_ended(call: Call) -> None:
        await ended.put(call)

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    await model.tokens.put("Goodbye")
    assert (await session.next_frame())["text"] == "Goodbye"
    await session.call_ended("CA1", "trn_1")

    call = await asyncio.wait_for(ended.get(), WAIT)
    assert call.call_sid == "CA1" and call.ended
    assert await asyncio.wait_for(completed.get(), WAIT) is False  # stopped, not exhausted
    assert model.closed.is_set()  # the stalled model was closed at once, no token needed
    assert streams["trn_1"].abort_reason == "call.ended"
    assert switchboard_server.replies["trn_1"].writes == ["Goodbye"] and not switchboard_server.dropped


async def test_write_from_writes_every_chunk_in_order(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    outcome: asyncio.Queue[bool] = asyncio.Queue()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        async def tokens() -> AsyncIterator[str]:
            for token in ["one ", "two ", "three"]:
                yield token

        async with call.reply_stream(turn) as stream:
            await outcome.put(await stream.write_from(tokens()))

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    await session.frames_until("reply.end", "trn_1")
    assert await asyncio.wait_for(outcome.get(), WAIT) is True
    assert switchboard_server.replies["trn_1"].writes == ["one ", "two ", "three"]
    assert switchboard_server.replies["trn_1"].ended


async def test_async_with_ends_the_reply_even_when_the_block_raises(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    escaped: asyncio.Queue[BaseException] = asyncio.Queue()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        try:
            async with call.reply_stream(turn) as stream:
                await stream.write("Let me check")
                raise LookupError("no such booking")
        except LookupError as error:
            await escaped.put(error)  # the exception is not swallowed by the stream

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    frames = await session.frames_until("reply.end", "trn_1")
    assert [f["type"] for f in frames] == ["reply.write", "reply.end"]
    assert isinstance(await asyncio.wait_for(escaped.get(), WAIT), LookupError)


async def test_end_is_idempotent_and_nothing_is_written_after_it(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        stream = call.reply_stream(turn)
        assert call.reply_stream(turn) is stream  # one stream per turn
        await stream.write("Done.")
        await stream.end()
        await stream.end()
        await stream.write(" And more.")
        # the handler returns: the SDK's implied end sends nothing more either

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    await session.turn_end("trn_2")  # a later turn marks where trn_1's frames must have stopped
    await session.frames_until("reply.end", "trn_2")
    assert [f for f in session.received if f["turn_id"] == "trn_1"] == [
        {"type": "reply.write", "turn_id": "trn_1", "text": "Done."},
        {"type": "reply.end", "turn_id": "trn_1"},
    ]
    assert not switchboard_server.dropped


async def test_a_handler_that_never_ends_its_reply_gets_it_ended(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        await call.reply_stream(turn).write("Sure.")

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    assert [f["type"] for f in await session.frames_until("reply.end", "trn_1")] == [
        "reply.write",
        "reply.end",
    ]


async def test_a_long_write_is_split_into_frames_under_the_limit(
    switchboard_server: FakeSwitchboard, new_agent: Callable[..., Agent], run_agent: RunAgent
) -> None:
    agent = new_agent()
    # Quotes and control characters grow when JSON-escaped: the worst case for the frame size.
    text = ('"\x01' * (MAX_WRITE_CHARS * 2))[: MAX_WRITE_CHARS * 2 + 17]

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        await call.reply_stream(turn).write(text)

    session = await run_agent(agent)
    await session.turn_end("trn_1")
    frames = await session.frames_until("reply.end", "trn_1")

    writes = [f for f in frames if f["type"] == "reply.write"]
    assert len(writes) == 3
    assert all(len(json.dumps(f, ensure_ascii=False).encode()) <= MAX_FRAME for f in writes)
    assert "".join(switchboard_server.replies["trn_1"].writes) == text
    assert switchboard_server.malformed == 0
