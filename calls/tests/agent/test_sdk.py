"""The Python SDK (sdk/, switchboard_agent) against the real server, over real sockets: a server
process run as the Dockerfile runs it, Twilio's side played on its relay socket, and agents
written with the SDK in this test, as a customer writes them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from asgiref.sync import sync_to_async
from switchboard_agent import Agent
from switchboard_agent import Call as AgentCall
from switchboard_agent import Turn as AgentTurn
from websockets.asyncio.client import ClientConnection, connect

from agents.models import AgentKey, Persona
from calls.models import Call, Turn
from calls.simulator.relay import PhoneCall, twilio_signature
from fakes.servers import SERVER_TWILIO_TOKEN, ServerProcess

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 10.0  # seconds: every wait below is bounded by it


@pytest.fixture
def agent_persona(default_persona) -> Persona:
    default_persona.llm_provider = Persona.LlmProvider.AGENT
    default_persona.welcome_greeting = ""
    default_persona.save()
    return default_persona


@pytest.fixture
def server(agent_persona, server_processes) -> ServerProcess:
    (server,) = server_processes(1)
    return server


@pytest.fixture
async def agents(server) -> AsyncIterator[Callable[..., Agent]]:
    """Agents built with the SDK, for the server, closed after the test."""
    _, key = await sync_to_async(AgentKey.objects.issue)("sdk-test")
    made: list[Agent] = []

    def make(*, close_grace: float = 5.0) -> Agent:
        made.append(Agent(url=server.ws_url("/ws/agent/"), api_key=key, close_grace=close_grace))
        return made[-1]

    yield make
    for agent in made:
        await agent.close()


async def run(agent: Agent) -> asyncio.Task[None]:
    """Start `agent` and return once the server has greeted it."""
    task = asyncio.create_task(agent.run())
    async with asyncio.timeout(BOUND):
        while not agent.connected:  # noqa: ASYNC110 - the SDK has no connect event to await
            await asyncio.sleep(0.02)
    return task


class Caller:
    """Twilio's side of one relay socket on the server process."""

    def __init__(self, ws: ClientConnection, call: PhoneCall) -> None:
        self.ws, self.call = ws, call

    async def say(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True}))

    async def interrupt(self, heard: str) -> None:
        frame = {"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 900}
        await self.ws.send(json.dumps(frame))

    async def tokens(self, count: int) -> list[str]:
        tokens: list[str] = []
        async with asyncio.timeout(BOUND):
            while len(tokens) < count:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == "text" and frame["token"]:
                    tokens.append(frame["token"])
        return tokens

    async def reply(self) -> str:
        text = ""
        async with asyncio.timeout(BOUND):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == "text":
                    text += frame["token"]
                    if frame["last"]:
                        return text


async def dial(server: ServerProcess) -> AsyncIterator[Caller]:
    call = PhoneCall(from_number="+14155550198", to_number="+14155550100")
    url = server.ws_url("/ws/relay/")
    headers = {"X-Twilio-Signature": twilio_signature(SERVER_TWILIO_TOKEN, url)}
    async with connect(url, additional_headers=headers, proxy=None) as ws:
        await ws.send(json.dumps(call.setup_message({})))
        yield Caller(ws, call)


def stored(call_sid: str) -> list[tuple]:
    return list(
        Turn.objects.filter(call__call_sid=call_sid).in_order().values_list("role", "text", "interrupted")
    )


async def until_ended(call_sid: str) -> list[tuple]:
    async with asyncio.timeout(BOUND):
        while not await Call.objects.filter(call_sid=call_sid, ended_at__isnull=False).aexists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the server process writes it: nothing here to await
    return await sync_to_async(stored)(call_sid)


async def test_a_turn_streams_from_the_sdk_to_the_caller_and_is_stored(server, agents):
    agent = agents()

    @agent.on("turn.end")
    async def reply(turn: AgentTurn, call: AgentCall) -> None:
        assert [(m.role, m.text) for m in turn.history] == [("user", "When do you open?")]
        async with call.reply_stream(turn) as stream:
            for token in ["We **open**", " at nine", "."]:
                await stream.write(token)

    await run(agent)
    async for caller in dial(server):
        await caller.say("When do you open?")
        assert await caller.reply() == "We open at nine."  # the persona's speech filters applied
        sid = caller.call.call_sid
    assert await until_ended(sid) == [
        ("user", "When do you open?", False),
        ("assistant", "We **open** at nine.", False),  # as generated, as for any model
    ]


async def test_a_barge_in_sets_aborted_and_stops_the_sdk_loop(server, agents):
    agent = agents()
    stopped_at: list[tuple[int, bool]] = []

    @agent.on("turn.end")
    async def reply(turn: AgentTurn, call: AgentCall) -> None:
        async with call.reply_stream(turn) as stream:
            for n in range(200):
                if stream.aborted:
                    break
                await stream.write(f" word{n}")
                await asyncio.sleep(0.02)  # a model's pace between tokens
            stopped_at.append((n, stream.aborted))

    await run(agent)
    async for caller in dial(server):
        await caller.say("Tell me everything.")
        heard = "".join(await caller.tokens(3))
        await caller.interrupt(heard)
        async with asyncio.timeout(BOUND):
            while not stopped_at:  # noqa: ASYNC110 - the handler runs in the SDK's task
                await asyncio.sleep(0.02)
        sid = caller.call.call_sid
    turns = await until_ended(sid)
    assert [t[0] for t in turns] == ["user", "assistant"] and turns[1][2]  # cut short
    assert turns[1][1].strip() == heard.strip()  # to what the caller heard
    [(last, aborted)] = stopped_at
    assert aborted and last < 100  # the loop stopped on `aborted`, long before its end


async def test_two_prompts_in_a_row_void_the_first_reply(server, agents):
    agent = agents()
    thinking = asyncio.Event()
    continued = asyncio.Event()

    @agent.on("turn.end")
    async def reply(turn: AgentTurn, call: AgentCall) -> None:
        async with call.reply_stream(turn) as stream:
            if turn.text == "Hello?":
                thinking.set()
                await continued.wait()  # still thinking when the caller goes on
                await stream.write("Too late.")  # dropped: the reply is void
                return
            await stream.write(f"You said: {turn.text}")

    @agent.on("turn.continued")
    async def on_continued(turn: AgentTurn, call: AgentCall) -> None:
        continued.set()

    await run(agent)
    async for caller in dial(server):
        await caller.say("Hello?")
        async with asyncio.timeout(BOUND):
            await thinking.wait()
        await caller.say("Are you there?")
        # The void reply said nothing; the new turn carries the whole utterance.
        assert await caller.reply() == "You said: Hello? Are you there?"
        sid = caller.call.call_sid
    assert continued.is_set()
    turns = await until_ended(sid)
    role, text, interrupted = turns[-1]
    assert (role, " ".join(text.split()), interrupted) == (
        "assistant",
        "You said: Hello? Are you there?",
        False,
    )
    assert "Too late." not in {text for _, text, _ in turns}


async def test_an_agent_that_crashes_mid_reply_keeps_what_it_sent_and_a_new_one_takes_over(server, agents):
    first = agents(close_grace=0.1)

    @first.on("turn.end")
    async def stalls(turn: AgentTurn, call: AgentCall) -> None:
        stream = call.reply_stream(turn)
        await stream.write("Let me see")
        await asyncio.Event().wait()  # hangs until the process dies

    await run(first)
    async for caller in dial(server):
        await caller.say("Is it open?")
        assert await caller.tokens(1) == ["Let me see"]
        await first.close()  # the agent process dies: its reply ends where it was
        assert await caller.reply() == ""  # the talk cycle is closed

        second = agents()

        @second.on("turn.end")
        async def answers(turn: AgentTurn, call: AgentCall) -> None:
            async with call.reply_stream(turn) as stream:
                await stream.write("Yes, it is.")

        await run(second)
        await caller.say("Hello?")
        assert await caller.reply() == "Yes, it is."
        sid = caller.call.call_sid
    assert [t[:2] for t in await until_ended(sid)] == [
        ("user", "Is it open?"),
        ("assistant", "Let me see"),
        ("user", "Hello?"),
        ("assistant", "Yes, it is."),
    ]


async def test_two_agent_processes_share_the_calls_and_keep_them(server, agents):
    served: dict[str, set[str]] = {"a": set(), "b": set()}
    for name in ("a", "b"):
        agent = agents()

        def handler(name: str = name):
            async def reply(turn: AgentTurn, call: AgentCall) -> None:
                served[name].add(call.call_sid)
                async with call.reply_stream(turn) as stream:
                    await stream.write(f"Agent {name}.")

            return reply

        agent.on("turn.end")(handler())
        await run(agent)

    callers = [dial(server), dial(server)]
    one, two = [await anext(c) for c in callers]
    answers = []
    for caller in (one, two, one, two):
        await caller.say("Who is this?")
        answers.append(await caller.reply())
    for c in callers:
        await c.aclose()
    assert answers[0] == answers[2] and answers[1] == answers[3]  # each call stays with its agent
    assert {answers[0], answers[1]} == {"Agent a.", "Agent b."}  # and they are spread
    assert served["a"] and served["b"] and not served["a"] & served["b"]
