"""Ordered, off-path database writes for one live call.

The token path never waits for the database: the engine queues each write here and a single
task per call applies them in order. Closing drains the queue, so every turn that was spoken is
stored before the socket's coroutines end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from calls.models import Call, Turn

logger = logging.getLogger(__name__)

Write = Callable[[], Awaitable[Any]]


@transaction.atomic
def call_metadata_append(call_id: int, key: str, entry: dict) -> None:
    """Append to a list in Call.metadata under a row lock (callbacks write metadata too)."""
    call = Call.objects.select_for_update().only("metadata").get(pk=call_id)
    call.metadata.setdefault(key, []).append(entry)
    call.save(update_fields=["metadata", "updated_at"])


acall_metadata_append = sync_to_async(call_metadata_append)


@transaction.atomic
def call_metadata_set(call_id: int, key: str, value: Any) -> None:
    call = Call.objects.select_for_update().only("metadata").get(pk=call_id)
    call.metadata[key] = value
    call.save(update_fields=["metadata", "updated_at"])


acall_metadata_set = sync_to_async(call_metadata_set)


class CallRecorder:
    def __init__(self, call: Call) -> None:
        self.call = call
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"recorder:{call.call_sid}")

    def create_turn(self, **fields: Any) -> None:
        self._queue.put_nowait(lambda: Turn.objects.acreate(call_id=self.call.pk, **fields))

    def update_turn(self, sequence: int, **fields: Any) -> None:
        self._queue.put_nowait(
            lambda: Turn.objects.filter(call_id=self.call.pk, sequence=sequence).aupdate(**fields)
        )

    def update_call(self, **fields: Any) -> None:
        fields["updated_at"] = timezone.now()
        self._queue.put_nowait(lambda: Call.objects.filter(pk=self.call.pk).aupdate(**fields))

    def note(self, key: str, entry: dict) -> None:
        """Keep an event (an error, a warning) in the call's metadata, timestamped."""
        entry = {"at": timezone.now().isoformat(), **entry}
        self._queue.put_nowait(lambda: acall_metadata_append(self.call.pk, key, entry))

    def set_metadata(self, key: str, value: Any) -> None:
        self._queue.put_nowait(lambda: acall_metadata_set(self.call.pk, key, value))

    def then(self, write: Write) -> None:
        """Run any other write after everything queued so far."""
        self._queue.put_nowait(write)

    async def close(self, timeout: float = 10.0) -> None:
        """Apply every queued write, then stop."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            logger.error("call %s: database writes did not finish in %ss", self.call.call_sid, timeout)
            self._task.cancel()

    async def _run(self) -> None:
        while (write := await self._queue.get()) is not None:
            await self._apply(write)

    async def _apply(self, write: Write) -> None:
        for attempt in (1, 2):
            try:
                await write()
                return
            except DatabaseError:
                # A connection dropped between writes (server restart, idle timeout): reconnect once.
                logger.warning(
                    "call %s: write failed (attempt %s)", self.call.call_sid, attempt, exc_info=True
                )
                await sync_to_async(close_old_connections)()
            except Exception:
                logger.exception("call %s: write failed", self.call.call_sid)
                return
