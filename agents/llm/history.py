"""Conversation history as providers accept it: strictly alternating, user first, never empty."""

from __future__ import annotations

from collections.abc import Iterable

from agents.llm.base import ChatMessage

# Claude's history must open with the caller; the greeting the agent spoke first is kept behind it.
CALL_CONNECTED = "(The call connects.)"


def normalise_history(turns: Iterable[tuple[str, str]]) -> list[ChatMessage]:
    """Merge consecutive same-role turns, drop empty ones, and open with a user message.

    `turns` are (role, text) pairs in spoken order, each text being what the caller heard.
    """
    messages: list[ChatMessage] = []
    for role, text in turns:
        text = text.strip()
        if not text:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = f"{messages[-1]['content']}\n{text}"
        else:
            messages.append({"role": role, "content": text})
    if messages and messages[0]["role"] == "assistant":
        messages.insert(0, {"role": "user", "content": CALL_CONNECTED})
    return messages
