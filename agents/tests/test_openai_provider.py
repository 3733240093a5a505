"""The OpenAI-compatible provider over the wire: the real openai SDK against the fake server."""

from __future__ import annotations

import pytest

from agents.llm.base import ToolCall, ToolSpec
from agents.llm.openai import OpenAIProvider
from agents.models import Persona
from fakes.openai_server import FakeReply
from fakes.replies import stream_reply

PERSONA = Persona(
    name="Desk",
    system_prompt="You answer the phone.",
    llm_provider=Persona.LlmProvider.OPENAI,
    llm_model="gpt-test",
    temperature=0.3,
    max_tokens=120,
)
MESSAGES = [
    {"role": "user", "content": "Hi."},
    {"role": "assistant", "content": "Hello, how can I help?"},
    {"role": "user", "content": "What's the weather in Paris?"},
]
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
END_CALL = ToolSpec(name="end_call", description="Hang up.")


@pytest.fixture
async def provider(fake_openai) -> OpenAIProvider:
    return OpenAIProvider.shared(api_key="test-openai-key", base_url=fake_openai.base_url)


async def test_text_streams_token_by_token(provider, fake_openai, reply_into):
    fake_openai.reply_with(["Sunny", " and", " mild", "."])
    tokens: list[str] = []
    reply = reply_into(tokens)

    calls = await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply)

    assert tokens == ["Sunny", " and", " mild", "."]
    assert calls == [] and reply.ended
    assert (await fake_openai.streams[0].wait_ended()).completed


async def test_the_request_carries_system_prompt_history_temperature_and_max_tokens(
    provider, fake_openai, reply_into
):
    await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply_into([]))

    [request] = fake_openai.requests
    assert request["model"] == "gpt-test"
    assert request["messages"] == [{"role": "system", "content": "You answer the phone."}, *MESSAGES]
    assert request["temperature"] == 0.3 and request["max_tokens"] == 120
    assert request["stream"] is True and "tools" not in request
    assert fake_openai.headers[0]["Authorization"] == "Bearer test-openai-key"


async def test_tools_are_offered_as_functions(provider, fake_openai, reply_into):
    await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply_into([]), tools=[WEATHER])

    assert fake_openai.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]


async def test_streamed_tool_call_fragments_come_back_as_tool_calls_in_order(
    provider, fake_openai, reply_into
):
    fake_openai.queue(
        FakeReply(
            tokens=["Let", " me", " check", "."],
            tool_use=[
                {"name": "get_weather", "input": {"city": "Paris", "units": "metric"}},
                {"name": "end_call", "input": {}},
            ],
        )
    )
    tokens: list[str] = []

    calls = await stream_reply(
        provider, persona=PERSONA, messages=MESSAGES, reply=reply_into(tokens), tools=[WEATHER, END_CALL]
    )

    assert tokens == ["Let", " me", " check", "."]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris", "units": "metric"}),
        ("end_call", {}),
    ]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert calls[0] == ToolCall(
        name="get_weather", arguments={"city": "Paris", "units": "metric"}, id=calls[0].id
    )


async def test_one_client_per_loop_key_and_base_url(fake_openai):
    first = OpenAIProvider.shared(api_key="a", base_url=fake_openai.base_url)

    assert OpenAIProvider.shared(api_key="a", base_url=fake_openai.base_url) is first
    assert OpenAIProvider.shared(api_key="b", base_url=fake_openai.base_url) is not first
    assert OpenAIProvider.shared(api_key="a", base_url="http://127.0.0.1:1/v1") is not first
