"""The agent process of `bench.relay_load --agent`: client-side replies, as a customer would run
them with the SDK (switchboard_agent), streaming each reply from the same fake Anthropic API the
server-side runs use, through the same client path (agents/llm/anthropic.py: the SDK for the
request, the lean SSE reader for the tokens), so the figures differ by the agent hop alone. The
plain SDK's typed stream (`messages.stream`) costs this process several times the CPU a token:
at 200 calls it saturates a core and its queue, not Switchboard, sets the latency. It prints
"ready" once connected.

    SWITCHBOARD_AGENT_URL=ws://127.0.0.1:8000/ws/agent/ SWITCHBOARD_API_KEY=... \\
    ANTHROPIC_BASE_URL=http://127.0.0.1:8765 ANTHROPIC_API_KEY=bench \\
    .venv/bin/python -m bench.agent_forwarder
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from contextlib import aclosing

import django
import uvloop
from switchboard_agent import Agent, Call, Turn

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")
django.setup()

# After setup: the provider module imports the persona model.
from agents.llm.anthropic import AnthropicProvider  # noqa: E402
from agents.llm.base import ChatMessage, ModelRequest  # noqa: E402


async def main() -> None:
    agent = Agent()

    @agent.on("turn.end")
    async def reply(turn: Turn, call: Call) -> None:
        provider = AnthropicProvider.shared(
            api_key=os.environ["ANTHROPIC_API_KEY"], base_url=os.environ["ANTHROPIC_BASE_URL"]
        )
        messages = [ChatMessage(role=m.role, content=m.text) for m in turn.history if m.text]
        request = ModelRequest(model="bench", system="", messages=messages)
        # The loop written out, as in sdk/examples/anthropic_agent.py: write_from races two
        # futures a token, which would be this process's largest cost.
        async with call.reply_stream(turn) as stream, aclosing(provider.stream(request)) as deltas:
            async for delta in deltas:
                if stream.aborted:
                    break
                if isinstance(delta, str):
                    await stream.write(delta)

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
