"""The Anthropic provider over the wire: the real anthropic SDK against the fake Messages API."""

from __future__ import annotations

import pytest

from agents.llm.anthropic import AnthropicProvider, text_delta
from agents.llm.base import ToolCall, ToolSpec
from agents.models import Persona
from fakes.anthropic_server import FakeReply
from fakes.replies import stream_reply

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

    calls = await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply)

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

    calls = await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply, tools=[WEATHER])

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

    calls = await stream_reply(
        provider, persona=PERSONA, messages=MESSAGES, reply=reply_into([]), tools=[end_call]
    )

    assert [(c.name, c.arguments) for c in calls] == [("end_call", {})]
    assert fake_anthropic.requests[0]["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}', "Hello"),
        (
            '{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"caf\\u00e9 \\"ok\\"\\n é"}}'.encode(),
            'café "ok"\n é',
        ),
        # Any other shape is left to json.loads: another delta, spaces, a key after `text`, a cut.
        (
            b'{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\""}}',
            None,
        ),
        (b'{"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}', None),
        (b'{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi","extra":1}}', None),
        (b'{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi', None),
    ],
)
def test_text_deltas_are_read_without_json_loads_only_in_the_apis_own_shape(data, text):
    assert text_delta(data) == text
