"""Ordered, off-path database writes for the live calls, batched across calls.

The token path never waits for the database: the engine queues each write on its call's
CallRecorder. All the calls on an event loop share one CallWrites, which applies what they queued
in one hop to the database thread every RELAY_WRITE_BATCH_SECONDS, with the turns of all calls in
one INSERT. The hop matters more than its SQL: while the database thread runs ORM code it holds
the GIL, and the event loop, which gives the GIL up at every socket read and write, waits for it
each time. A hop per write per call (0.6 ms of ORM each) made every call's tokens late under load;
a few short hops a second do not.

Closing a recorder waits until its call's writes are applied, so every turn that was spoken is
stored before the socket's coroutines end.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls.models import Call, Turn
from calls.store.db import drain_task, reconnecting
from calls.store.lifecycle import calls_ended

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


# --- what a call queues -----------------------------------------------------------------------
@dataclass(slots=True)
class _CreateTurn:
    call: Call
    fields: dict[str, Any]


@dataclass(slots=True)
class _UpdateTurn:
    call: Call
    sequence: int
    fields: dict[str, Any]


@dataclass(slots=True)
class _Run:
    call: Call
    write: Write


@dataclass(slots=True)
class _EndCall:
    call: Call
    source: str
    session_id: str  # the relay session that ended


@dataclass(slots=True)
class _Applied:
    """Resolved once everything queued before it has been applied."""

    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_Op = _CreateTurn | _UpdateTurn | _Run | _EndCall | _Applied


class CallRecorder:
    """One call's writes, applied in the order they were queued."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._writes = CallWrites.for_this_loop()
        self._closed = False

    def create_turn(self, **fields: Any) -> None:
        self._queue(_CreateTurn(self.call, fields))

    def update_turn(self, sequence: int, **fields: Any) -> None:
        self._queue(_UpdateTurn(self.call, sequence, fields))

    def note(self, key: str, entry: dict) -> None:
        """Keep an event (an error, a warning) in the call's metadata, timestamped."""
        entry = {"at": timezone.now().isoformat(), **entry}
        self._queue(_Run(self.call, lambda: call_metadata_update(self.call.pk, key, append=entry)))

    def set_metadata(self, key: str, value: Any) -> None:
        self._queue(_Run(self.call, lambda: call_metadata_update(self.call.pk, key, value=value)))

    def end_call(self, source: str) -> None:
        """Mark the call ended (calls/store/lifecycle.py: calls_ended) after its writes so far, with the
        other calls ending in the same batch, unless Twilio has moved it to another session."""
        self._queue(_EndCall(self.call, source, self.call.session_id))

    def then(self, write: Write) -> None:
        """Run any other (synchronous, ORM) write after everything queued so far."""
        self._queue(_Run(self.call, write))

    async def close(self, timeout: float = 30.0) -> None:
        """Wait until every write queued so far is applied; later writes are refused."""
        if self._closed:
            return
        self._closed = True
        applied = _Applied()
        self._writes.submit(applied)
        try:
            await asyncio.wait_for(asyncio.shield(applied.done), timeout)
        except TimeoutError:
            logger.error("call %s: database writes did not finish in %ss", self.call.call_sid, timeout)

    def _queue(self, op: _Op) -> None:
        if self._closed:
            logger.error("call %s: write after close dropped: %r", self.call.call_sid, op)
            return
        self._writes.submit(op)


class CallWrites:
    """The writes of every live call on one event loop, applied in batches. Its task runs only
    while there is something to write, so nothing lingers after the last call."""

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CallWrites] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._pending: list[_Op] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_this_loop(cls) -> CallWrites:
        loop = asyncio.get_running_loop()
        writes = cls._per_loop.get(loop)
        if writes is None:
            writes = cls._per_loop[loop] = cls()
        return writes

    def submit(self, op: _Op) -> None:
        self._pending.append(op)
        if self._task is None:
            self._task = drain_task(self._run(), name="call-writes")

    async def _run(self) -> None:
        try:
            while self._pending:
                # Let the other calls' writes of this moment join the batch.
                await asyncio.sleep(settings.RELAY_WRITE_BATCH_SECONDS)
                batch, self._pending = self._pending, []
                try:
                    # Not in_db_thread: each write retries on its own after a dropped connection,
                    # and retrying a whole batch could insert its turns twice.
                    await sync_to_async(apply_batch)(batch)
                except Exception:  # apply_batch keeps one call's failure from the others
                    logger.exception("a batch of %s call writes failed", len(batch))
                finally:
                    for op in batch:
                        if isinstance(op, _Applied) and not op.done.done():
                            op.done.set_result(None)
        finally:
            self._task = None


def apply_batch(batch: list[_Op]) -> None:
    """Apply the ops in order, except that the turns created and the calls ended between two other
    writes go in one INSERT and one transaction (turns first: a call's summary reads them). An
    update of a turn created in the same batch is folded into its INSERT (a truncated reply is
    then written once)."""
    turns: list[Turn] = []
    unsaved: dict[tuple[int, int], Turn] = {}
    ends: list[_EndCall] = []
    for op in batch:
        if isinstance(op, _CreateTurn):
            turn = Turn(call=op.call, **op.fields)
            turns.append(turn)
            unsaved[(op.call.pk, turn.sequence)] = turn
        elif isinstance(op, _UpdateTurn) and (op.call.pk, op.sequence) in unsaved:
            for name, value in op.fields.items():
                setattr(unsaved[(op.call.pk, op.sequence)], name, value)
        elif isinstance(op, _EndCall):
            ends.append(op)
        elif isinstance(op, _UpdateTurn | _Run):
            _insert(turns)
            _end(ends)
            turns, unsaved, ends = [], {}, []
            _write(op)
    _insert(turns)
    _end(ends)


def _end(ends: list[_EndCall]) -> None:
    for source in dict.fromkeys(end.source for end in ends):
        group = [end for end in ends if end.source == source]
        try:
            sessions = {end.call.pk: end.session_id for end in group}
            reconnecting(calls_ended, list(sessions), source=source, sessions=sessions)
            continue
        except Exception:
            logger.exception("ending %s calls at once failed; ending them one by one", len(group))
        for end in group:
            ended = partial(calls_ended, [end.call.pk], source=source, sessions={end.call.pk: end.session_id})
            _write(_Run(end.call, ended))


def _insert(turns: list[Turn]) -> None:
    if not turns:
        return
    try:
        reconnecting(Turn.objects.bulk_create, turns)
        return
    except Exception:
        logger.exception("inserting %s turns at once failed; inserting them one by one", len(turns))
    for turn in turns:  # one bad turn must not cost the other calls theirs
        turn.pk = None
        _write(_Run(turn.call, lambda turn=turn: turn.save(force_insert=True)))


def _write(op: _UpdateTurn | _Run) -> None:
    try:
        if isinstance(op, _UpdateTurn):
            reconnecting(Turn.objects.filter(call_id=op.call.pk, sequence=op.sequence).update, **op.fields)
        else:
            reconnecting(op.write)
    except Exception:
        # One bad write must not cost the call its other turns.
        logger.exception("call %s: a database write failed", op.call.call_sid)
