"""What every streaming provider owes the engine, checked over the wire for each one: aborting
closes the stream, cancelling does too, and every failure is a ProviderError that still ends the
reply. Provider-specific wire details stay in test_anthropic_provider.py and test_openai_provider.py."""

from __future__ import annotations

import pytest

from agents.llm.anthropic import AnthropicProvider
from agents.llm.base import ProviderError, ToolSpec
from agents.llm.openai import OpenAIProvider
from agents.models import Persona
from fakes.base import FakeReply
from fakes.replies import stream_reply

PERSONA = Persona(name="Desk", system_prompt="You answer the phone.", llm_model="model-test", max_tokens=120)
MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER = ToolSpec(name="get_weather", description="Current weather for a city.")


@pytest.fixture(params=["anthropic", "openai"])
async def endpoint(request):
    """(provider, fake server) for each provider, the real SDK pointed at its fake."""
    if request.param == "anthropic":
        fake = request.getfixturevalue("fake_anthropic")
        return AnthropicProvider.shared(api_key="test-anthropic-key", base_url=fake.url), fake
    fake = request.getfixturevalue("fake_openai")
    return OpenAIProvider.shared(api_key="test-openai-key", base_url=fake.base_url), fake


async def test_aborting_stops_the_tokens_and_closes_the_stream(endpoint, reply_into):
    provider, fake = endpoint
    fake.queue(FakeReply(tokens=["One", " two", " three", " four", " five"], hold_after=4))
    tokens: list[str] = []
    reply = reply_into(tokens, abort_at=2)

    calls = await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply, tools=[WEATHER])

    assert tokens == ["One", " two"] and calls == [] and reply.ended
    stream = await fake.streams[0].wait_ended()
    assert stream.closed_early and not stream.completed


async def test_replies_one_after_another_share_one_connection(endpoint, reply_into):
    """A finished reply's connection goes back to the pool (a new one would cost the real API a
    TLS handshake), and an aborted reply's does not."""
    provider, fake = endpoint
    # The end of the body comes a moment after the last event, as it may from a real server.
    fake.queue(FakeReply(tokens=["One"], end_delay=0.02), FakeReply(tokens=["Two"], end_delay=0.02))
    fake.queue(FakeReply(tokens=["Three", " four", " five"], hold_after=2), FakeReply(tokens=["Six"]))
    for abort_at in (None, None, 1, None):
        await stream_reply(
            provider, persona=PERSONA, messages=MESSAGES, reply=reply_into([], abort_at=abort_at)
        )

    first, second, aborted, after_abort = fake.peers
    assert first == second == aborted
    assert after_abort != aborted


async def test_cancelling_a_held_reply_closes_the_stream(endpoint, cancel_held_reply):
    provider, fake = endpoint
    fake.queue(FakeReply(tokens=["One", " two", " three"], hold_after=2))

    tokens, reply = await cancel_held_reply(
        lambda reply: stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply), after=2
    )

    assert tokens == ["One", " two"] and reply.ended
    assert (await fake.streams[0].wait_ended()).closed_early


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (FakeReply(status=400, error_type="invalid_request_error"), "fake failure"),
        (FakeReply(status=401, error_type="authentication_error"), "fake failure"),
        (FakeReply(tokens=["One", " two", " three"], cut_after=2), "stream broke"),
        (FakeReply(tokens=["One", " two", " three"], error_event_after=2), "overloaded"),
    ],
    ids=["http-400", "http-401", "connection-cut", "error-in-stream"],
)
async def test_failures_raise_provider_error_and_still_end_the_reply(endpoint, failure, message, reply_into):
    provider, fake = endpoint
    fake.queue(failure)
    tokens: list[str] = []
    reply = reply_into(tokens)

    with pytest.raises(ProviderError, match=message):
        await stream_reply(provider, persona=PERSONA, messages=MESSAGES, reply=reply)

    assert tokens == ([] if failure.status != 200 else ["One", " two"])
    assert reply.ended
    assert len(fake.requests) == 1  # a 4xx is not retried, and a broken stream is not re-requested
