"""The offline demo model: deterministic replies, streamed word by word at a speaking pace, so
the embedded run works with no API key and no network. It also calls the persona's tools on
plain cues ("goodbye", "a real person", "in Spanish"), so every call-control path can be tried
in a simulated call."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence

from agents.llm.base import ChatMessage, ModelRequest, ToolCall, ToolSpec
from agents.llm.history import CALL_CONNECTED

FIRST_TOKEN_DELAY = 0.35  # seconds, like a fast hosted model
WORD_INTERVAL = 0.06

END_CUES = re.compile(r"\b(good ?bye|bye|hang up)\b", re.I)
TRANSFER_CUES = re.compile(r"\b(human|real person|someone else|operator|agent please)\b", re.I)
# A few language names a caller might ask for, and their BCP-47 primary subtags.
LANGUAGES = {
    "spanish": "es",
    "español": "es",
    "french": "fr",
    "german": "de",
    "english": "en",
    "portuguese": "pt",
}


def demo_reply(speaker: str, messages: list[ChatMessage]) -> str:
    heard = messages[-1]["content"] if messages else ""
    turn = sum(1 for m in messages if m["role"] == "user" and m["content"] != CALL_CONNECTED)
    if turn <= 1:
        return (
            f"This is the Switchboard demo model speaking as {speaker}, so I am not really thinking. "
            f"I heard you say: {heard} Set an Anthropic API key and I will answer properly."
        )
    return f"Still the demo model here. You said: {heard} Talk over me any time to test interruptions."


def demo_turn(
    speaker: str, messages: list[ChatMessage], tools: Sequence[ToolSpec]
) -> tuple[str, list[ToolCall]]:
    """What the demo model says, and the tool it calls when the caller's words cue one it has."""
    heard = messages[-1]["content"] if messages else ""
    offered = {tool.name: tool for tool in tools}
    if "end_call" in offered and END_CUES.search(heard):
        return "Thanks for trying the Switchboard demo. Goodbye!", [
            ToolCall("end_call", {"reason": "caller said goodbye"})
        ]
    if "transfer_to_human" in offered and TRANSFER_CUES.search(heard):
        call = ToolCall("transfer_to_human", {"reason": "caller asked for a person", "summary": heard})
        return "Of course, I'll transfer you to a colleague now.", [call]
    if "switch_language" in offered:
        codes = offered["switch_language"].parameters["properties"]["code"]["enum"]
        for name, prefix in LANGUAGES.items():
            code = next((c for c in codes if c.lower().startswith(prefix)), None)
            if code and name in heard.lower():
                return "", [ToolCall("switch_language", {"code": code})]
    return demo_reply(speaker, messages), []


class DemoProvider:
    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ToolCall]:
        text, calls = demo_turn(request.speaker, request.messages, request.tools)
        await asyncio.sleep(FIRST_TOKEN_DELAY)
        for n, word in enumerate(re.findall(r"\s*\S+", text)):
            if n:
                await asyncio.sleep(WORD_INTERVAL)
            yield word
        for call in calls:
            yield call
