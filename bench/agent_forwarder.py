"""The agent process of `bench.relay_load --agent`: client-side replies, as a customer would run
them with the SDK (switchboard_agent), streaming each reply from the same fake Anthropic API the
server-side runs use, through the real anthropic SDK. It prints "ready" once connected.

    SWITCHBOARD_AGENT_URL=ws://127.0.0.1:8000/ws/agent/ SWITCHBOARD_API_KEY=... \\
    ANTHROPIC_BASE_URL=http://127.0.0.1:8765 ANTHROPIC_API_KEY=bench \\
    .venv/bin/python -m bench.agent_forwarder
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anthropic
import uvloop
from switchboard_agent import Agent, Call, Turn


async def main() -> None:
    client = anthropic.AsyncAnthropic()
    agent = Agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        messages: Any = [{"role": m.role, "content": m.text} for m in turn.history if m.text]
        async with (
            call.reply_stream(turn) as stream,
            client.messages.stream(model="bench", max_tokens=512, messages=messages) as response,
        ):
            async for text in response.text_stream:
                if stream.aborted:
                    break
                await stream.write(text)

    async def announce() -> None:
        while not agent.connected:  # noqa: ASYNC110 - the SDK has no connect event to await
            await asyncio.sleep(0.05)
        print("ready", flush=True)

    running = asyncio.create_task(agent.run())
    await announce()
    with contextlib.suppress(asyncio.CancelledError):
        await running


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
