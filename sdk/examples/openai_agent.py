"""A Switchboard agent whose replies come from OpenAI's Responses API, streamed token by token.

    pip install switchboard-agent openai
    export SWITCHBOARD_AGENT_URL=wss://switchboard.example.com/ws/agent/
    export SWITCHBOARD_API_KEY=...   # created by staff in the admin (Agent keys)
    export OPENAI_API_KEY=...
    python openai_agent.py

`write_from` stops the moment the caller interrupts, keeps talking or hangs up: it cancels the
pending token and closes the generator, whose `async with` closes the HTTP stream, so no more
tokens are generated (or paid for).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence

from openai import AsyncOpenAI
from openai.types.responses import ResponseInputParam

from switchboard_agent import Agent, Call, Message, Turn

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")
INSTRUCTIONS = (
    "You are a friendly receptionist on a phone call. Answer in one or two short spoken sentences: "
    "no lists, no markdown, no emoji."
)

client = AsyncOpenAI()  # OPENAI_API_KEY from the environment
agent = Agent()  # SWITCHBOARD_AGENT_URL and SWITCHBOARD_API_KEY from the environment


def as_input(history: Sequence[Message]) -> ResponseInputParam:
    """The call so far (as the caller heard it) in the Responses API's input format."""
    return [
        {"role": "assistant" if message.role == "assistant" else "user", "content": message.text}
        for message in history
        if message.text.strip()
    ]


async def tokens(turn: Turn, call: Call) -> AsyncIterator[str]:
    """The reply's text deltas, as OpenAI streams them."""
    async with client.responses.stream(
        model=MODEL,
        instructions=f"{INSTRUCTIONS} The caller's language is {call.language or 'en-US'}.",
        input=as_input(turn.history),
    ) as events:
        async for event in events:
            if event.type == "response.output_text.delta":
                yield event.delta


@agent.on("turn.end")
async def reply(turn: Turn, call: Call) -> None:
    # The reply is ended on exit, even if OpenAI fails (then the error is logged by the SDK).
    async with call.reply_stream(turn) as stream:
        await stream.write_from(tokens(turn, call))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    agent.run_forever()
