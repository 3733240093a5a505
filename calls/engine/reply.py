"""One reply in flight, between a provider's text deltas and the transport.

Providers only yield what the model produced (text deltas, then tool calls); the engine consumes
them here (`stream_into`), writes each delta through the speech filters to the transport, and on
abort stops reading and closes the provider's iterator, which closes its HTTP stream. So the
providers in `agents/llm/` never need an engine type, and no import runs from `agents` to `calls`.
A `StallWatch` (calls/engine/stalls.py) may bound the wait for each delta.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Protocol

from agents.llm.base import ToolCall
from calls.engine.stalls import StallWatch


class SpeechFilter(Protocol):
    """Turns model text into speakable text as it streams (see calls/engine/speech.py)."""

    def feed(self, text: str) -> str: ...
    def flush(self) -> str: ...


class ReplyStream:
    """One reply in flight. `write` keeps the model's text as generated and forwards what is
    speakable of it at once, so after an interrupt the engine knows exactly what was produced
    (`text`) and what went out (`spoken`)."""

    __slots__ = ("_sink", "_speech", "aborted", "ended", "first_token_at", "parts", "spoken")

    def __init__(self, sink: Callable[[str], Awaitable[None]], speech: SpeechFilter | None = None) -> None:
        self._sink = sink
        self._speech = speech
        self.aborted = False
        self.ended = False
        self.parts: list[str] = []
        self.spoken: list[str] = []
        self.first_token_at: float | None = None

    async def write(self, token: str) -> None:
        if self.aborted or not token:
            return
        self.parts.append(token)
        await self._say(self._speech.feed(token) if self._speech else token)

    async def flush(self) -> None:
        """Send what the speech filter still holds (the reply is complete)."""
        if self._speech and not self.aborted:
            await self._say(self._speech.flush())

    async def _say(self, text: str) -> None:
        if not text:
            return
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        # Recorded before sending: a token cut off mid-send counts as sent, never as unsaid.
        self.spoken.append(text)
        await self._sink(text)

    def end(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.aborted = True

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def spoken_text(self) -> str:
        return "".join(self.spoken)


async def stream_into(
    deltas: AsyncGenerator[str | ToolCall], reply: ReplyStream, watch: StallWatch | None = None
) -> list[ToolCall]:
    """Write a provider's text deltas into `reply` until it ends or is aborted; return the tool
    calls it asked for (none once aborted). The iterator is always closed, and `reply` ended.
    With a `watch`, a model that goes quiet past its limits raises ReplyStalled."""
    calls: list[ToolCall] = []
    watch = watch or StallWatch()  # without limits it only stamps deltas: one loop for both
    clock = time.monotonic
    try:
        # The watch outside: a stall closes the provider's stream before it is reported.
        async with watch, aclosing(deltas):
            async for delta in deltas:
                watch.last = clock()  # the watch's whole per-token cost
                if reply.aborted:
                    return []  # leaving closes the provider's stream: no more tokens are paid for
                if delta.__class__ is str:
                    await reply.write(delta)
                else:
                    calls.append(delta)  # type: ignore[arg-type]
    finally:
        reply.end()
    return [] if reply.aborted else calls
