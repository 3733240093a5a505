"""The SDK's tests: a fake Switchboard server on a real socket, and agents run against it.

They need neither Django nor a database: `cd sdk && pytest` runs them alone; `make test` at the
repository root runs them with the rest of the suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from switchboard_agent import Agent, Backoff

from .fake_switchboard import WAIT, AgentSession, FakeSwitchboard

# Reconnects in the tests wait 10 to 50 ms, not seconds.
FAST_BACKOFF = Backoff(initial=0.02, maximum=0.08)


@pytest.fixture
async def switchboard_server() -> AsyncIterator[FakeSwitchboard]:
    async with FakeSwitchboard() as server:
        yield server


@pytest.fixture
def new_agent(switchboard_server: FakeSwitchboard) -> Callable[..., Agent]:
    """An Agent pointed at the fake server with the right key (keywords override)."""

    def make(**options: Any) -> Agent:
        defaults: dict[str, Any] = {
            "url": switchboard_server.url,
            "api_key": switchboard_server.api_key,
            "backoff": FAST_BACKOFF,
        }
        return Agent(**(defaults | options))

    return make


@pytest.fixture
async def run_agent(
    switchboard_server: FakeSwitchboard,
) -> AsyncIterator[Callable[[Agent], Awaitable[AgentSession]]]:
    """Start `agent.run()` in a task and return the server's side of its connection; at the end,
    close the agent and check that run() returned cleanly."""
    running: list[tuple[Agent, asyncio.Task[None]]] = []

    async def start(agent: Agent) -> AgentSession:
        running.append((agent, asyncio.create_task(agent.run())))
        return await switchboard_server.next_session()

    yield start
    for agent, task in running:
        await asyncio.wait_for(agent.close(), WAIT)
        await asyncio.wait_for(task, WAIT)  # re-raises whatever run() raised
        assert not agent._tasks, "handler tasks outlived the agent"
