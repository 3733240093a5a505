"""The Anthropic provider over the wire: the real anthropic SDK against the fake Messages API."""

from __future__ import annotations

import pytest

from agents.llm.anthropic import AnthropicProvider
from agents.llm.base import ProviderError, ToolCall, ToolSpec
from agents.models import Persona
from fakes.anthropic_server import FakeReply

PERSONA = Persona(name="Desk", system_prompt="You answer the phone.", llm_model="claude-test", max_tokens=120)
MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
async def provider(fake_anthropic) -> AnthropicProvider:
    return AnthropicProvider.shared(api_key="test-anthropic-key", base_url=fake_anthropic.url)


async def test_text_streams_token_by_token_and_no_tools_are_sent(provider, fake_anthropic, reply_into):
    fake_anthropic.reply_with(["Sunny", " and", " mild", "."])
    tokens: list[str] = []
    reply = reply_into(tokens)

    calls = await provider.stream_reply(persona=PERSONA, messages=MESSAGES, reply=reply)

    assert tokens == ["Sunny", " and", " mild", "."]
    assert calls == [] and reply.ended
    [request] = fake_anthropic.requests
    assert "tools" not in request
    assert request["system"] == "You answer the phone." and request["max_tokens"] == 120
    assert "temperature" not in request


async def test_tools_are_offered_and_tool_use_blocks_come_back_as_tool_calls(
    provider, fake_anthropic, reply_into
):
    fake_anthropic.queue(
        FakeReply(
            tokens=["Let", " me", " check", "."], tool_use={"name": "get_weather", "input": {"city": "Paris"}}
        )
    )
    tokens: list[str] = []
    reply = reply_into(tokens)

    calls = await provider.stream_reply(persona=PERSONA, messages=MESSAGES, reply=reply, tools=[WEATHER])

    assert tokens == ["Let", " me", " check", "."]
    [call] = calls
    assert call == ToolCall(name="get_weather", arguments={"city": "Paris"}, id=call.id)
    assert call.id.startswith("toolu_")
    assert fake_anthropic.requests[0]["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    assert reply.ended


async def test_a_tool_without_input_gets_empty_arguments(provider, fake_anthropic, reply_into):
    fake_anthropic.queue(FakeReply(tokens=["Goodbye", "."], tool_use={"name": "end_call", "input": {}}))
    end_call = ToolSpec(name="end_call", description="Hang up.")

    calls = await provider.stream_reply(
        persona=PERSONA, messages=MESSAGES, reply=reply_into([]), tools=[end_call]
    )

    assert [(c.name, c.arguments) for c in calls] == [("end_call", {})]
    assert fake_anthropic.requests[0]["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


async def test_aborting_stops_the_tokens_and_closes_the_stream(provider, fake_anthropic, reply_into):
    fake_anthropic.queue(FakeReply(tokens=["One", " two", " three", " four", " five"], hold_after=4))
    tokens: list[str] = []
    reply = reply_into(tokens, abort_at=2)

    calls = await provider.stream_reply(persona=PERSONA, messages=MESSAGES, reply=reply, tools=[WEATHER])

    assert tokens == ["One", " two"] and calls == [] and reply.ended
    stream = await fake_anthropic.streams[0].wait_ended()
    assert stream.closed_early and not stream.completed


async def test_cancelling_a_held_reply_closes_the_stream(provider, fake_anthropic, cancel_held_reply):
    fake_anthropic.queue(FakeReply(tokens=["One", " two", " three"], hold_after=2))

    tokens, reply = await cancel_held_reply(
        lambda reply: provider.stream_reply(persona=PERSONA, messages=MESSAGES, reply=reply), after=2
    )

    assert tokens == ["One", " two"] and reply.ended
    assert (await fake_anthropic.streams[0].wait_ended()).closed_early


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (FakeReply(status=400, error_type="invalid_request_error"), "Anthropic"),
        (FakeReply(tokens=["One", " two", " three"], cut_after=2), "stream broke"),
        (FakeReply(tokens=["One", " two", " three"], error_event_after=2), "overloaded"),
    ],
    ids=["http-error", "connection-cut", "error-event"],
)
async def test_failures_raise_provider_error_and_still_end_the_reply(
    provider, fake_anthropic, failure, message, reply_into
):
    fake_anthropic.queue(failure)
    tokens: list[str] = []
    reply = reply_into(tokens)

    with pytest.raises(ProviderError, match=message):
        await provider.stream_reply(persona=PERSONA, messages=MESSAGES, reply=reply)

    assert tokens == ([] if failure.status != 200 else ["One", " two"])
    assert reply.ended
