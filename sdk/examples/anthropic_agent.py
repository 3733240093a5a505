"""A Switchboard agent whose replies come from Claude, streamed token by token.

    pip install switchboard-agent anthropic
    export SWITCHBOARD_AGENT_URL=wss://switchboard.example.com/ws/agent/
    export SWITCHBOARD_API_KEY=...   # created by staff in the admin (Agent keys)
    export ANTHROPIC_API_KEY=...
    python anthropic_agent.py

This one writes the loop out, as the reply-stream pattern goes: check `stream.aborted` before
every write and leave the loop when the caller interrupts, keeps talking or hangs up; leaving the
`async with` blocks closes the HTTP stream and ends the reply (even on an error).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from anthropic import AsyncAnthropic
from anthropic.types import MessageParam

from switchboard_agent import Agent, Call, Message, Turn

MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5")
SYSTEM = (
    "You are a friendly receptionist on a phone call. Answer in one or two short spoken sentences: "
    "no lists, no markdown, no emoji."
)

client = AsyncAnthropic()  # ANTHROPIC_API_KEY from the environment
agent = Agent()  # SWITCHBOARD_AGENT_URL and SWITCHBOARD_API_KEY from the environment


def as_messages(history: Sequence[Message]) -> list[MessageParam]:
    """The call so far in the shape Claude needs: roles alternate, and the caller speaks first
    (the greeting the agent opened the call with goes after a stand-in caller turn)."""
    turns: list[tuple[str, str]] = []
    for message in history:
        role = "assistant" if message.role == "assistant" else "user"
        text = message.text.strip()
        if not text:
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n{text}")
        else:
            turns.append((role, text))
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", "(The call connects.)"))
    return [_message(role, text) for role, text in turns]


def _message(role: str, text: str) -> MessageParam:
    if role == "assistant":
        return {"role": "assistant", "content": text}
    return {"role": "user", "content": text}


@agent.on("turn.end")
async def reply(turn: Turn, call: Call) -> None:
    async with (
        call.reply_stream(turn) as stream,
        client.messages.stream(
            model=MODEL,
            max_tokens=400,
            system=f"{SYSTEM} The caller's language is {call.language or 'en-US'}.",
            messages=as_messages(turn.history),
        ) as claude,
    ):
        async for text in claude.text_stream:
            if stream.aborted:  # the caller talked over it, kept talking, or hung up
                break
            await stream.write(text)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    agent.run_forever()
