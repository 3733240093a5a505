"""The reply stream: the text of one reply, written to the server as it is generated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Literal

from .call import Turn

AbortReason = Literal["turn.continued", "bot.interrupted", "call.ended", "disconnected", "closed"]
"""Why a reply became void: the caller kept talking, talked over it, or hung up; or the agent
lost (or closed) its connection, which ends the reply on the server where it stood."""

# A frame is at most 64 KiB; JSON can grow a character to six bytes ("\u001f"), so 8,000
# characters per reply.write always fit, whatever the text.
MAX_WRITE_CHARS = 8000

Sender = Callable[[dict[str, Any]], Awaitable[bool]]


class ReplyStream:
    """The reply to one turn. Get it with `call.reply_stream(turn)`.

    `write()` sends text as soon as you have it; `end()` finishes the reply. Once the reply is
    void (`aborted`) or ended, both are silent no-ops, so a handler never has to guard them; it
    only checks `aborted` to stop generating. Used as `async with call.reply_stream(turn) as
    stream:`, the reply is ended on exit, even when the block raises.
    """

    def __init__(self, turn: Turn, send: Sender) -> None:
        self.turn = turn
        self._send = send
        self._aborted = asyncio.Event()
        self._ended = False
        self._chunks: list[str] = []
        self.abort_reason: AbortReason | None = None
        """Why the reply became void, once it has."""
        self.heard: str | None = None
        """With `bot.interrupted`: the part of the reply the caller heard before talking over it."""

    @property
    def aborted(self) -> bool:
        """True once the reply is void: the caller kept talking, interrupted, hung up, or the
        connection was lost. Stop generating when you see it."""
        return self._aborted.is_set()

    @property
    def ended(self) -> bool:
        """True once `end()` was called (or the SDK ended the reply after your handler)."""
        return self._ended

    @property
    def text(self) -> str:
        """Everything written to the server so far."""
        return "".join(self._chunks)

    async def write(self, text: str) -> None:
        """Send `text` as the next part of the reply. A no-op once aborted or ended."""
        for start in range(0, len(text), MAX_WRITE_CHARS):
            if self._ended or self.aborted:
                return
            part = text[start : start + MAX_WRITE_CHARS]
            if await self._send({"type": "reply.write", "turn_id": self.turn.id, "text": part}):
                self._chunks.append(part)

    async def end(self) -> None:
        """Finish the reply: the server speaks what was written. Idempotent; nothing is sent for
        a reply that was aborted (the server has already dropped it)."""
        if self._ended:
            return
        self._ended = True
        if not self.aborted:
            await self._send({"type": "reply.end", "turn_id": self.turn.id})

    async def wait_aborted(self) -> AbortReason | None:
        """Wait until the reply becomes void; returns why. Race it against slow work to stop
        early (as `write_from` does)."""
        await self._aborted.wait()
        return self.abort_reason

    async def write_from(self, chunks: AsyncIterable[str]) -> bool:
        """Write every chunk of `chunks` (for example an LLM's text deltas) until it is exhausted
        or the reply becomes void.

        A model that stalls does not hold the reply: when it is aborted, the pending chunk is
        cancelled and the iterator closed at once. Returns True if every chunk was written,
        False if the reply was aborted or ended first. Does not end the reply.
        """
        iterator = aiter(chunks)
        aborted = asyncio.ensure_future(self._aborted.wait())
        try:
            while not (self.aborted or self._ended):
                pending = asyncio.ensure_future(_next(iterator))
                await asyncio.wait({pending, aborted}, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await pending
                    break
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    return True
                await self.write(chunk)
            return False
        finally:
            aborted.cancel()
            close = getattr(iterator, "aclose", None)
            if close is not None:
                # A generator that already finished (or was cancelled) closes as a no-op.
                with contextlib.suppress(Exception):
                    await close()

    def _abort(self, reason: AbortReason, heard: str | None = None) -> bool:
        """Make the reply void (called by the agent); True the first time."""
        if self.aborted:
            return False
        self.abort_reason = reason
        self.heard = heard
        self._aborted.set()
        return True

    async def __aenter__(self) -> ReplyStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.end()

    def __repr__(self) -> str:
        state = f"aborted ({self.abort_reason})" if self.aborted else "ended" if self._ended else "open"
        return f"<ReplyStream turn={self.turn.id} {state} chars={sum(map(len, self._chunks))}>"


async def _next(iterator: AsyncIterator[str]) -> str:
    return await anext(iterator)
