"""The speech-to-text tests' way to follow a recogniser's text as it changes (the fake servers
are the root conftest's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agents.stt.base import WebSocketStt


class TextWatch:
    """Follows `stt.on_text` so a test can wait for the client to have *received* a pushed event."""

    def __init__(self, stt: WebSocketStt) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Event()
        stt.on_text = self._on_text

    def _on_text(self, text: str) -> None:
        self.seen.append(text)
        self._changed.set()

    async def until(self, text: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.seen or self.seen[-1] != text:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def watch_text() -> Callable[[WebSocketStt], TextWatch]:
    return TextWatch
