"""Persona HTTP tools over the real socket: the model calls a tool, the engine calls the endpoint
(a fake tool server on loopback), gives the result back to the model (the fake Anthropic or
OpenAI API, through the real SDKs) in the provider's own format, and the caller hears the
continuation; slow tools get the filler line, failures go back to the model, barge-in cancels
what may be cancelled, and rounds are bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.utils import timezone

from agents.models import Persona, PersonaTool
from calls.engine.tool_loop import MAX_TOOL_ROUNDS
from calls.models import Call, Turn
from fakes.anthropic_server import FakeReply
from fakes.tool_server import FakeToolServer

pytestmark = [pytest.mark.django_db(transaction=True)]

CALL_SID = "CA" + "7" * 32
ARGUMENTS = {"order": "A17"}
SHIPPED = json.dumps({"status": "shipped", "got": ARGUMENTS}, separators=(",", ":"))


@pytest.fixture(autouse=True)
def quick_speech(settings):
    settings.RELAY_SPEECH_CHARS_PER_SECOND = 1_000_000  # speech 'finishes' at once
    settings.RELAY_END_GRACE_SECONDS = 0.05


@pytest.fixture
def tool_server() -> Iterator[FakeToolServer]:
    fake = FakeToolServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def persona(default_persona, fake_anthropic) -> Persona:
    default_persona.idle_timeout_seconds = None
    default_persona.save()
    return default_persona


@pytest.fixture
def call(persona) -> Call:
    return Call.objects.create(call_sid=CALL_SID, persona=persona, started_at=timezone.now())


@pytest.fixture
def add_tool(persona, tool_server, monkeypatch):
    """`add_tool(path, **fields)`: a check_order tool on the fake server, authorised by ORDERS_AUTH."""
    monkeypatch.setenv("ORDERS_AUTH", "Bearer orders-t0ken")

    async def add(path: str = "/fast", **fields) -> PersonaTool:
        values = {
            "name": "check_order",
            "description": "Looks an order up.",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
            "url": f"{tool_server.url}{path}",
            "auth_header_env": "ORDERS_AUTH",
        }
        return await PersonaTool.objects.acreate(persona=persona, **(values | fields))

    return add


def calls_tool(*tokens: str, arguments: dict | None = None) -> FakeReply:
    return FakeReply(tokens=list(tokens), tool_use={"name": "check_order", "input": arguments or ARGUMENTS})


def spoken(frames: list[dict]) -> str:
    return "".join(f["token"] for f in frames if f["type"] == "text")


async def assistant_turns(call: Call) -> list[Turn]:
    return [t async for t in Turn.objects.filter(call=call, role=Turn.Role.ASSISTANT).in_order()]


async def test_the_engine_calls_the_tool_and_the_caller_hears_the_continuation(
    relay, call, add_tool, tool_server, fake_anthropic
):
    await add_tool()
    fake_anthropic.queue(calls_tool("Let", " me", " check", "."), FakeReply(tokens=["It", " shipped", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("Where is order A17?")
    frames = await caller.reply()
    assert spoken(frames) == "Let me check. It shipped."
    assert [f["last"] for f in frames].count(True) == 1  # one talk cycle, closed at the very end

    [hit] = tool_server.hits
    assert (hit.method, hit.path, hit.body) == ("POST", "/fast", ARGUMENTS)
    assert hit.headers["Authorization"] == "Bearer orders-t0ken"

    first, follow_up = fake_anthropic.requests
    assert "check_order" in [t["name"] for t in first["tools"]]
    assert follow_up["messages"][:-2] == first["messages"]
    assistant, results = follow_up["messages"][-2:]
    [text, tool_use] = assistant["content"]
    assert assistant["role"] == "assistant" and text == {"type": "text", "text": "Let me check."}
    assert tool_use["type"] == "tool_use" and tool_use["name"] == "check_order"
    assert tool_use["input"] == ARGUMENTS and tool_use["id"].startswith("toolu_")
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": tool_use["id"], "content": SHIPPED, "is_error": False}
        ],
    }
    assert "tool_choice" not in follow_up  # the model may still call tools

    await caller.hang_up()
    [turn] = await assistant_turns(call)
    assert turn.text == turn.generated_text == "Let me check. It shipped."
    [record] = turn.tool_calls
    assert record["duration_ms"] >= 0
    assert {k: v for k, v in record.items() if k != "duration_ms"} == {
        "name": "check_order",
        "arguments": ARGUMENTS,
        "executed": True,
        "status": "ok",
        "result": SHIPPED,
    }
    [line] = turn.tool_call_lines
    assert line.call == 'check_order(order="A17")' and line.outcome.startswith("ok in ")
    assert line.result == SHIPPED


async def test_openai_gets_the_tool_calls_and_tool_messages(
    relay, call, persona, add_tool, tool_server, fake_openai
):
    persona.llm_provider, persona.llm_model = Persona.LlmProvider.OPENAI, "gpt-test"
    await persona.asave()
    await add_tool("/fast", method=PersonaTool.Method.GET)
    fake_openai.queue(calls_tool("Checking", "."), FakeReply(tokens=["It", " shipped", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("Where is order A17?")
    assert spoken(await caller.reply()) == "Checking. It shipped."

    [hit] = tool_server.hits
    assert (hit.method, hit.query, hit.body) == ("GET", ARGUMENTS, None)  # GET: the query string
    assert hit.headers["Authorization"] == "Bearer orders-t0ken"
    first, follow_up = fake_openai.requests
    assistant, tool_message = follow_up["messages"][-2:]
    [tool_call] = assistant["tool_calls"]
    assert assistant["role"] == "assistant" and assistant["content"] == "Checking."
    assert tool_call["type"] == "function" and tool_call["id"].startswith("call_")
    assert tool_call["function"] == {"name": "check_order", "arguments": json.dumps(ARGUMENTS)}
    assert tool_message == {"role": "tool", "tool_call_id": tool_call["id"], "content": SHIPPED}
    assert follow_up["messages"][:-2] == first["messages"]
    await caller.hang_up()


async def test_a_slow_tool_gets_the_filler_line_first(
    relay, call, persona, add_tool, tool_server, fake_anthropic
):
    persona.tool_filler_after_seconds = 0.2
    await persona.asave()
    await add_tool("/slow")
    fake_anthropic.queue(calls_tool(), FakeReply(tokens=["It", " shipped", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("Where is order A17?")

    [filler] = await caller.tokens(1)
    assert filler == "One moment, please."
    [hit] = tool_server.hits
    assert not hit.ended.is_set()  # said while the tool was still running
    tool_server.release()
    frames = await caller.reply()
    assert spoken(frames) == " It shipped."
    await caller.hang_up()

    [turn] = await assistant_turns(call)
    assert turn.text == "One moment, please. It shipped."  # the filler is part of the reply heard
    assert turn.tool_calls[0]["status"] == "ok"
    # The model sees its own words only (none, here), never the filler.
    assert fake_anthropic.requests[1]["messages"][-2]["content"][0]["type"] == "tool_use"


@pytest.mark.parametrize(
    ("path", "timeout", "status", "result"),
    [
        ("/error", 5.0, "error", "HTTP 500: database is down"),
        ("/badjson", 5.0, "error", "the tool's answer is not valid JSON: '{not json'"),
        ("/slow", 0.5, "timeout", "the tool did not answer within 0.5 seconds"),
    ],
)
async def test_a_failing_tool_goes_back_to_the_model_as_an_error(
    relay, call, add_tool, tool_server, fake_anthropic, path, timeout, status, result
):
    await add_tool(path, timeout_seconds=timeout)
    fake_anthropic.queue(
        calls_tool("One", " second", "."), FakeReply(tokens=["Sorry", ",", " try", " later", "."])
    )
    caller = await relay(CALL_SID)
    await caller.prompt("Where is order A17?")
    assert spoken(await caller.reply()) == "One second. Sorry, try later."

    [tool_result] = fake_anthropic.requests[1]["messages"][-1]["content"]
    assert tool_result["is_error"] is True and tool_result["content"] == result
    await caller.hang_up()
    [turn] = await assistant_turns(call)
    [record] = turn.tool_calls
    assert (record["status"], record["result"], record["executed"]) == (status, result, True)
    if status == "timeout":
        assert record["duration_ms"] >= 500


async def test_barge_in_cancels_a_running_cancellable_tool(
    relay, call, add_tool, tool_server, fake_anthropic
):
    await add_tool("/slow")
    fake_anthropic.queue(calls_tool("Let", " me", " check", "."), FakeReply(tokens=["Okay", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("Where is order A17?")
    assert "".join(await caller.tokens(4)) == "Let me check."
    [hit] = await tool_server.wait_for_hits(1)
    await caller.interrupt("Let me", duration_ms=300)
    await hit.wait_ended()
    assert hit.aborted and not hit.answered  # the request was hung up on

    await caller.prompt("Never mind.")
    assert spoken(await caller.reply()) == "Okay."
    await caller.hang_up()
    assert len(fake_anthropic.requests) == 2  # no continuation of the cut-off reply
    assert all(isinstance(m["content"], str) for m in fake_anthropic.requests[1]["messages"])

    cut, answer = await assistant_turns(call)
    assert cut.interrupted and cut.text == "Let me" and cut.generated_text == "Let me check."
    [record] = cut.tool_calls
    assert (record["status"], record["executed"]) == ("cancelled", False)
    assert record["duration_ms"] is not None
    assert answer.text == "Okay." and answer.tool_calls == []


async def test_a_tool_that_is_not_cancellable_completes_and_is_recorded(
    relay, call, add_tool, tool_server, fake_anthropic
):
    await add_tool("/slow", name="book_table", cancellable=False)
    fake_anthropic.queue(
        FakeReply(tokens=["Booking", "."], tool_use={"name": "book_table", "input": {"time": "7pm"}}),
        FakeReply(tokens=["Sure", "."]),
    )
    caller = await relay(CALL_SID)
    await caller.prompt("Book me a table at seven.")
    assert "".join(await caller.tokens(2)) == "Booking."
    [hit] = await tool_server.wait_for_hits(1)
    await caller.interrupt("Booking.", duration_ms=600)
    await caller.prompt("Also, do you have parking?")
    assert spoken(await caller.reply()) == "Sure."
    assert not hit.ended.is_set()  # still running, through the barge-in and the next reply

    tool_server.release()
    await hit.wait_ended()
    assert hit.answered and not hit.aborted
    await caller.hang_up()  # the socket's close waits for it to be stored
    booking, _ = await assistant_turns(call)
    [record] = booking.tool_calls
    assert (record["name"], record["status"], record["executed"]) == ("book_table", "ok", True)
    assert record["result"] == json.dumps(
        {"status": "shipped", "got": {"time": "7pm"}}, separators=(",", ":")
    )
    assert len(fake_anthropic.requests) == 2  # its result did not restart the cut-off reply


async def test_tool_rounds_are_bounded_then_the_model_answers_in_words(
    relay, call, add_tool, tool_server, fake_anthropic
):
    await add_tool()
    fake_anthropic.queue(
        *(calls_tool(arguments={"order": f"A{n}"}) for n in range(MAX_TOOL_ROUNDS)),
        FakeReply(tokens=["All", " shipped", "."]),
    )
    caller = await relay(CALL_SID)
    await caller.prompt("Where are my orders?")
    assert spoken(await caller.reply()) == "All shipped."
    await caller.hang_up()

    assert [hit.body for hit in tool_server.hits] == [{"order": f"A{n}"} for n in range(MAX_TOOL_ROUNDS)]
    requests = fake_anthropic.requests
    assert len(requests) == MAX_TOOL_ROUNDS + 1
    assert ["tool_choice" in r for r in requests] == [False] * MAX_TOOL_ROUNDS + [True]
    assert requests[-1]["tool_choice"] == {"type": "none"} and requests[-1]["tools"]
    assert len(requests[-1]["messages"]) == len(requests[0]["messages"]) + 2 * MAX_TOOL_ROUNDS
    [turn] = await assistant_turns(call)
    assert [r["arguments"] for r in turn.tool_calls] == [{"order": f"A{n}"} for n in range(MAX_TOOL_ROUNDS)]


async def test_a_built_in_tool_called_beside_one_waits_for_the_whole_reply(
    relay, call, add_tool, tool_server, fake_anthropic
):
    await add_tool()
    fake_anthropic.queue(
        FakeReply(
            tokens=["Checking", "."],
            tool_use=[
                {"name": "check_order", "input": ARGUMENTS},
                {"name": "end_call", "input": {"reason": "answered"}},
            ],
        ),
        FakeReply(tokens=["It", " shipped", ".", " Goodbye", "."]),
    )
    caller = await relay(CALL_SID)
    await caller.prompt("Where is A17? That's all.")
    frames = []
    while not frames or frames[-1]["type"] != "end":
        frames.append(await caller.ws.receive_json_from(5))
    assert spoken(frames) == "Checking. It shipped. Goodbye."
    assert json.loads(frames[-1]["handoffData"]) == {"action": "end", "reason": "answered"}

    # Every tool_use gets its tool_result, the built-in one included.
    assistant, results = fake_anthropic.requests[1]["messages"][-2:]
    uses = [block for block in assistant["content"] if block["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["check_order", "end_call"]
    assert [r["tool_use_id"] for r in results["content"]] == [u["id"] for u in uses]
    assert results["content"][1]["content"] == "Noted: this takes effect once your reply has been spoken."
    await caller.hang_up()
    [turn] = await assistant_turns(call)
    assert [(r["name"], r["executed"]) for r in turn.tool_calls] == [
        ("check_order", True),
        ("end_call", True),
    ]
