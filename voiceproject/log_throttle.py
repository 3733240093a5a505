"""Repeated warnings of one kind, rate-limited across a whole process: the first few of each
interval are written as they come, the rest are counted and summed up in one line.

A flood (thousands of malformed frames on hundreds of sockets) would otherwise write a line each:
the log is what we read when things go wrong, and a flood must not bury it nor fill the disk.
No timer runs per socket or per line: the next warning after the interval writes the summary, and
one timer per throttle, set only once something was held back, writes it if none comes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from weakref import WeakKeyDictionary


class LogThrottle:
    """At most `burst` warnings per `interval` seconds; then `summary` once for those held back,
    formatted with the window's count (all of them), its length in seconds, the number of
    distinct sources and how many were written."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        summary: str,
        burst: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.summary = summary
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.window_start = clock()
        self.count = 0  # warnings in this window, written or held back
        self.written = 0
        self.sources: set[Hashable] = set()
        self.timer: asyncio.TimerHandle | None = None

    def warn(self, source: Hashable, msg: str, *args: object) -> None:
        """A warning from `source` (what the summary counts: a socket, a client): written, or
        held back (at DEBUG) and counted once this interval's burst is spent."""
        now = self.clock()
        if now - self.window_start >= self.interval:
            self.flush(now)
        self.count += 1
        self.sources.add(source)
        if self.written < self.burst:
            self.written += 1
            self.logger.warning(msg, *args)
            return
        self.logger.debug(msg, *args)
        self._schedule_flush()

    def flush(self, now: float | None = None) -> None:
        """Sum up the window if anything was held back, and start the next one."""
        now = self.clock() if now is None else now
        if self.count > self.written:
            seconds = max(1, round(now - self.window_start))
            self.logger.warning(
                self.summary, f"{self.count:,}", f"{seconds:,}", len(self.sources), self.written
            )
        self.window_start = now
        self.count = self.written = 0
        self.sources = set()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def flush_if_due(self) -> None:
        """The timer's callback: the summary is due unless a warning already wrote it."""
        self.timer = None
        if self.clock() - self.window_start >= self.interval:
            self.flush()
        elif self.count > self.written:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self.timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop here: the next warning after the interval writes the summary
        delay = max(0.0, self.window_start + self.interval - self.clock())
        self.timer = loop.call_later(delay, self.flush_if_due)


_throttles: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, LogThrottle]] = WeakKeyDictionary()


def loop_throttle(name: str, make: Callable[[], LogThrottle]) -> LogThrottle:
    """The running event loop's throttle called `name`, made on first use.

    Kept per loop rather than per module: a server process runs one loop for all its sockets, so
    this is process-wide where it matters, while the timer always belongs to a live loop (each
    test runs its own, and starts with a fresh count)."""
    throttles = _throttles.setdefault(asyncio.get_running_loop(), {})
    if name not in throttles:
        throttles[name] = make()
    return throttles[name]
