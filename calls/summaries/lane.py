"""One background thread working through a bounded queue of call ids: publishing summaries to the
broker, or (the embedded run) writing them in-process.

Summaries must never compete with live calls for more than one thread, nor grow memory without
bound while a dependency is down: a full lane refuses the id, and the call, still marked queued
in the database, is left for the sweep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)


class SummaryLane:
    """A daemon thread started on first use (and again after a fork, which keeps no threads),
    handling ids one at a time, each id at most once while it waits; `periodic`, if given, runs on
    the same thread when the thread starts and then every `every` seconds."""

    def __init__(
        self,
        name: str,
        handle: Callable[[int], object],
        *,
        maxsize: int,
        periodic: Callable[[], object] | None = None,
        every: float = 30.0,
    ) -> None:
        self.name = name
        self.handle = handle
        self.maxsize = maxsize
        self.periodic = periodic
        self.every = every
        self._waiting: deque[int] = deque()
        self._busy = False
        self._stopping = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, call_id: int) -> bool:
        """Hand an id to the thread; False when the lane is full (the caller leaves it to the sweep)."""
        with self._changed:
            if call_id not in self._waiting:
                if len(self._waiting) >= self.maxsize:
                    return False
                self._waiting.append(call_id)
            self._start()
            self._changed.notify_all()
        return True

    def start(self) -> None:
        """Start the thread now (and with it the first `periodic` run) rather than on first `put`."""
        with self._changed:
            self._start()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing waits and nothing runs (tests, shutdown); False at the deadline."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Let the thread finish what it is doing and end; ids still waiting are dropped (the
        database still says queued: the sweep queues them again)."""
        with self._changed:
            thread, self._stopping = self._thread, True
            self._waiting.clear()
            self._changed.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        next_periodic = time.monotonic()

        def periodic_due() -> bool:
            return self.periodic is not None and time.monotonic() >= next_periodic

        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._waiting or self._stopping or periodic_due(),
                    timeout=max(0.0, next_periodic - time.monotonic()) if self.periodic else None,
                )
                if self._stopping:
                    return
                # The periodic job goes first when due: a steady stream of ids must not starve it.
                periodic = periodic_due()
                call_id = None if periodic or not self._waiting else self._waiting.popleft()
                self._busy = True
            try:
                if periodic:
                    next_periodic = time.monotonic() + self.every
                    self.periodic()  # type: ignore[misc]
                elif call_id is not None:
                    self.handle(call_id)
            except Exception:  # one bad id must not stop the lane
                logger.exception(
                    "%s: %s failed", self.name, "the periodic job" if periodic else f"call {call_id}"
                )
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
