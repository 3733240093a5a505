"""Driving a provider as the engine does, for the provider tests and the benchmarks: a persona's
request in, the deltas written into a ReplyStream, the tool calls out."""

from __future__ import annotations

from collections.abc import Sequence

from agents.llm import LLMProvider, request_for
from agents.llm.base import ChatMessage, ToolCall, ToolSpec
from agents.models import Persona
from calls.engine.reply import ReplyStream, stream_into


async def stream_reply(
    provider: LLMProvider,
    *,
    persona: Persona,
    messages: list[ChatMessage],
    reply: ReplyStream,
    tools: Sequence[ToolSpec] = (),
    system: str | None = None,
) -> list[ToolCall]:
    return await stream_into(
        provider.stream(request_for(persona, messages, system=system, tools=tools)), reply
    )
