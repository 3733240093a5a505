"""A stalled model is cut off by inactivity, not only by a cap on the whole reply.

A reply may take a while in total, but a model that has gone quiet should be given up on within
seconds: the caller is listening to silence. `StallWatch` bounds the time to the first delta and
the gap between deltas. Its cost on the per-token path is one timestamp (`last`); the check runs
on one timer per reply, which fires about once per gap limit while deltas flow and reschedules
itself to exactly `last delta + gap`, so no timer is created or moved per token.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Literal, Self

from agents.llm.base import ProviderError

StallKind = Literal["first token", "gap"]


class ReplyStalled(ProviderError):
    """The model sent nothing for longer than one of the persona's stall limits."""

    def __init__(self, kind: StallKind, seconds: float) -> None:
        self.kind = kind
        self.seconds = seconds
        if kind == "first token":
            message = f"the model stalled: no first token within {seconds:g} s"
        else:
            message = f"the model stalled: no token for {seconds:g} s mid-reply"
        super().__init__(message)


class StallWatch:
    """Within `async with`, raise ReplyStalled when no delta came `first_token` seconds after
    entering, or `gap` seconds after the last one. The reader sets `last = time.monotonic()` for
    every delta (text or tool call), inline, since it runs per token; without limits nothing else
    happens.

    It fires through an `asyncio.timeout`, so cancelling the waiting task and telling that cancel
    from anyone else's (an interrupt, a hang-up) is asyncio's own, tested logic."""

    __slots__ = ("_handle", "_timeout", "first_token", "gap", "last", "stalled", "started")

    def __init__(self, first_token: float | None = None, gap: float | None = None) -> None:
        self.first_token = first_token
        self.gap = gap
        self.started = 0.0
        self.last: float | None = None  # time.monotonic() of the last delta, set by the reader
        self.stalled: ReplyStalled | None = None
        self._timeout: asyncio.Timeout | None = None
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Self:
        self.started = time.monotonic()
        if self.first_token or self.gap:
            self._timeout = asyncio.timeout(None)
            await self._timeout.__aenter__()
            self._schedule(self._first_wait(self.started))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._timeout is None:
            return
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:
            if self.stalled is None:
                raise
            raise self.stalled from timeout

    def _first_wait(self, now: float) -> float:
        """Seconds until the next check while no delta has come: the first-token deadline, but no
        later than one gap from now, so a first delta followed by silence is caught on time."""
        waits = [self.started + self.first_token - now] if self.first_token else []
        if self.gap:
            waits.append(self.gap)
        return min(waits)

    def _schedule(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        # call_later, not call_at: deltas are stamped with time.monotonic(), and an event loop's
        # clock (uvloop's) need not be the same one.
        self._handle = loop.call_later(max(0.0, delay), self._check)

    def _check(self) -> None:
        self._handle = None
        now = time.monotonic()
        if self.last is None:
            if self.first_token and now - self.started >= self.first_token:
                self._fire(ReplyStalled("first token", self.first_token))
            else:
                self._schedule(self._first_wait(now))
        elif self.gap:  # without a gap limit, a first-token limit's job is done
            quiet = now - self.last
            if quiet >= self.gap:
                self._fire(ReplyStalled("gap", self.gap))
            else:
                self._schedule(self.gap - quiet)

    def _fire(self, stalled: ReplyStalled) -> None:
        self.stalled = stalled
        assert self._timeout is not None
        self._timeout.reschedule(asyncio.get_running_loop().time())  # expires now: cancels the reader
