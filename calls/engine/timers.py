"""Named one-shot timers for a live call (check-ins, keypad pauses, the time limit, a pending end).

Each runs as its own task, so a socket's close can cancel them all and none outlives the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Timers:
    def __init__(self, prefix: str = "call") -> None:
        self.prefix = prefix
        self._tasks: dict[str, asyncio.Task] = {}

    def start(self, name: str, delay: float, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` after `delay` seconds, replacing a pending timer of the same name."""
        self.cancel(name)
        self._tasks[name] = asyncio.create_task(
            self._run(name, delay, callback), name=f"{self.prefix}:{name}"
        )

    def cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, name: str, delay: float, callback: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        # Off the books before the callback runs, so it can start (or cancel) timers itself.
        if self._tasks.get(name) is asyncio.current_task():
            del self._tasks[name]
        await callback()
