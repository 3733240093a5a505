"""Ordered, off-path database writes for one live call.

The token path never waits for the database: the engine queues each write here and one task per
call applies them in order, everything queued so far in a single hop to the database thread.
Closing drains the queue, so every turn that was spoken is stored before the socket's
coroutines end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls.db import in_db_thread, reconnecting
from calls.models import Call, Turn

logger = logging.getLogger(__name__)

Write = Callable[[], Any]


@transaction.atomic
def call_metadata_update(call_id: int, key: str, *, append: dict | None = None, value: Any = None) -> None:
    """Set or append to a key of Call.metadata under a row lock (callbacks write metadata too)."""
    call = Call.objects.select_for_update().only("metadata").get(pk=call_id)
    if append is not None:
        call.metadata.setdefault(key, []).append(append)
    else:
        call.metadata[key] = value
    call.save(update_fields=["metadata", "updated_at"])


class CallRecorder:
    def __init__(self, call: Call) -> None:
        self.call = call
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"recorder:{call.call_sid}")

    def create_turn(self, **fields: Any) -> None:
        self._queue.put_nowait(lambda: Turn.objects.create(call_id=self.call.pk, **fields))

    def update_turn(self, sequence: int, **fields: Any) -> None:
        self._queue.put_nowait(
            lambda: Turn.objects.filter(call_id=self.call.pk, sequence=sequence).update(**fields)
        )

    def note(self, key: str, entry: dict) -> None:
        """Keep an event (an error, a warning) in the call's metadata, timestamped."""
        entry = {"at": timezone.now().isoformat(), **entry}
        self._queue.put_nowait(lambda: call_metadata_update(self.call.pk, key, append=entry))

    def set_metadata(self, key: str, value: Any) -> None:
        self._queue.put_nowait(lambda: call_metadata_update(self.call.pk, key, value=value))

    def then(self, write: Write) -> None:
        """Run any other (synchronous, ORM) write after everything queued so far."""
        self._queue.put_nowait(write)

    async def close(self, timeout: float = 30.0) -> None:
        """Apply every queued write, then stop."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            logger.error("call %s: database writes did not finish in %ss", self.call.call_sid, timeout)
            self._task.cancel()

    async def _run(self) -> None:
        closing = False
        while not closing:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            closing = None in batch
            writes = [write for write in batch if write is not None]
            if writes:
                await in_db_thread(self._apply, writes)

    def _apply(self, writes: list[Write]) -> None:
        for write in writes:
            try:
                reconnecting(write)
            except Exception:
                # One bad write must not cost the call its other turns.
                logger.exception("call %s: a database write failed", self.call.call_sid)
