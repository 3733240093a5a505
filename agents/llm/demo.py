"""The offline demo model: deterministic replies, streamed word by word at a speaking pace,
so the embedded run works with no API key and no network."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from agents.llm.base import ChatMessage, ReplyStream, ToolCall, ToolSpec
from agents.llm.history import CALL_CONNECTED
from agents.models import Persona

FIRST_TOKEN_DELAY = 0.35  # seconds, like a fast hosted model
WORD_INTERVAL = 0.06


def demo_reply(persona: Persona, messages: list[ChatMessage]) -> str:
    heard = messages[-1]["content"] if messages else ""
    turn = sum(1 for m in messages if m["role"] == "user" and m["content"] != CALL_CONNECTED)
    if turn <= 1:
        return (
            f"This is the Switchboard demo model speaking as {persona.name}, so I am not really thinking. "
            f"I heard you say: {heard} Set an Anthropic API key and I will answer properly."
        )
    return f"Still the demo model here. You said: {heard} Talk over me any time to test interruptions."


class DemoProvider:
    async def stream_reply(
        self,
        *,
        persona: Persona,
        messages: list[ChatMessage],
        reply: ReplyStream,
        tools: Sequence[ToolSpec] = (),
        system: str | None = None,
    ) -> list[ToolCall]:
        """Never calls a tool: it only proves the voice path works."""
        try:
            await asyncio.sleep(FIRST_TOKEN_DELAY)
            for n, word in enumerate(re.findall(r"\s*\S+", demo_reply(persona, messages))):
                if reply.aborted:
                    break
                if n:
                    await asyncio.sleep(WORD_INTERVAL)
                await reply.write(word)
        finally:
            reply.end()
        return []
