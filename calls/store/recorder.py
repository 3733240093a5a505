"""Ordered, off-path database writes for the live calls, batched across calls.

The token path never waits for the database: the engine queues each write on its call's
CallRecorder. All the calls on an event loop share one CallWrites, which applies what they queued
in one hop to the database thread every RELAY_WRITE_BATCH_SECONDS, with the turns of all calls in
one INSERT. The hop matters more than its SQL: while the database thread runs ORM code it holds
the GIL, and the event loop, which gives the GIL up at every socket read and write, waits for it
each time. A hop per write per call (0.6 ms of ORM each) made every call's tokens late under load;
a few short hops a second do not.

Closing a recorder waits until its call's writes are applied, so every turn that was spoken is
stored before the socket's coroutines end. While the database is unreachable the writes wait, in
order, and are retried until it is back (`CallWrites`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, overload

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from calls.metadata import EngineError, Handoff
from calls.models import Call, Turn
from calls.store.db import DATABASE_DOWN, drain_task, reconnecting
from calls.store.lifecycle import calls_ended

logger = logging.getLogger(__name__)

Write = Callable[[], Any]

# The pauses between attempts while the database is unreachable: short at first (a restart
# takes seconds), then at most this long.
RETRY_FIRST_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0


@transaction.atomic
def call_metadata_update(
    call_id: int, key: str, *, append: EngineError | None = None, value: object = None
) -> None:
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

    def note(self, key: Literal["errors"], entry: EngineError) -> None:
        """Keep an event (an error) in the call's metadata, timestamped."""
        stamped: EngineError = {"at": timezone.now().isoformat(), **entry}
        self._queue(_Run(self.call, lambda: call_metadata_update(self.call.pk, key, append=stamped)))

    @overload
    def set_metadata(self, key: Literal["language"], value: str) -> None: ...
    @overload
    def set_metadata(self, key: Literal["handoff"], value: Handoff) -> None: ...
    def set_metadata(self, key: str, value: object) -> None:
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
        if not await self.applied(timeout):
            logger.error(
                "call %s: database writes not applied after %ss; they stay queued until the database takes them",
                self.call.call_sid,
                timeout,
            )

    async def applied(self, timeout: float = 30.0) -> bool:
        """Wait until every write queued so far is applied; False if that took longer than `timeout`
        (the writes stay queued)."""
        applied = _Applied()
        self._writes.submit(applied)
        try:
            await asyncio.wait_for(asyncio.shield(applied.done), timeout)
        except TimeoutError:
            return False
        return True

    def _queue(self, op: _Op) -> None:
        if self._closed:
            logger.error("call %s: write after close dropped: %r", self.call.call_sid, op)
            return
        self._writes.submit(op)


class CallWrites:
    """The writes of every live call on one event loop, applied in batches. Its task runs only
    while there is something to write, so nothing lingers after the last call.

    While the database cannot be reached (a restart, a failover) the writes wait here, in order,
    and are tried again with a growing pause until it is back: no turn is lost and no sequence
    gets a gap. Memory is bounded by RELAY_WRITE_QUEUE_LIMIT; past it new writes are dropped,
    loudly."""

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CallWrites] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._pending: list[_Op] = []
        self._task: asyncio.Task[None] | None = None
        self._outage_since: float | None = None
        self.dropped = 0  # writes refused because the queue was full

    @classmethod
    def for_this_loop(cls) -> CallWrites:
        loop = asyncio.get_running_loop()
        writes = cls._per_loop.get(loop)
        if writes is None:
            writes = cls._per_loop[loop] = cls()
        return writes

    def submit(self, op: _Op) -> None:
        if len(self._pending) >= settings.RELAY_WRITE_QUEUE_LIMIT and not isinstance(op, _Applied):
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.error(
                    "call writes queue full (%s waiting for the database): %s writes dropped so far",
                    len(self._pending),
                    self.dropped,
                )
            return
        self._pending.append(op)
        if self._task is None:
            self._task = drain_task(self._run(), name="call-writes")

    async def _run(self) -> None:
        pause = settings.RELAY_WRITE_BATCH_SECONDS
        try:
            while self._pending:
                # Let the other calls' writes of this moment join the batch.
                await asyncio.sleep(pause)
                batch, self._pending = self._pending, []
                try:
                    # Not in_db_thread: apply_batch retries each write on its own, and retrying
                    # a whole batch could insert its turns twice.
                    waiting = await sync_to_async(apply_batch)(batch)
                except Exception:  # apply_batch keeps one call's failure from the others
                    logger.exception("a batch of %s call writes failed", len(batch))
                    waiting = []
                self._pending[:0] = waiting  # before anything queued meanwhile: order holds
                pause = self._after_attempt(len(batch), len(waiting), pause)
                still = {id(op) for op in waiting}
                for op in batch:
                    if isinstance(op, _Applied) and id(op) not in still and not op.done.done():
                        op.done.set_result(None)
        finally:
            self._task = None

    def _after_attempt(self, tried: int, waiting: int, pause: float) -> float:
        """Log the outage's start and end; the pause before the next attempt."""
        if not waiting:
            if self._outage_since is not None:
                logger.warning(
                    "database reachable again after %.1f s: the call writes that waited are applied",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            return settings.RELAY_WRITE_BATCH_SECONDS
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.error(
                "database unreachable: %s call writes wait, in order, and are retried until it is back",
                waiting,
            )
            return RETRY_FIRST_SECONDS
        return min(pause * 2, RETRY_MAX_SECONDS)


class DatabaseUnavailable(Exception):
    """The database could not be reached: the write waits for it rather than being dropped."""


def _database_reachable() -> bool:
    try:
        connection.close()
        connection.ensure_connection()
    except Exception:
        return False
    return True


def _attempt[**P, R](fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run one write. A database error with the database unreachable is DatabaseUnavailable (the
    write waits); with it reachable, the write itself failed and the error is raised."""
    try:
        return reconnecting(fn, *args, **kwargs)
    except DATABASE_DOWN as exc:
        if not _database_reachable():
            raise DatabaseUnavailable(str(exc)) from exc
        raise


Step = tuple[list[_Op], Callable[[], None]]


def apply_batch(batch: list[_Op]) -> list[_Op]:
    """Apply the ops in order, except that the turns created and the calls ended between two other
    writes go in one INSERT and one transaction (turns first: a call's summary reads them). An
    update of a turn created in the same batch is folded into its INSERT (a truncated reply is
    then written once).

    Returns what could not be applied because the database is unreachable: the first such op and
    every op after it, to be tried again in the same order. Each step either commits whole or not
    at all, so the retry repeats nothing that was stored."""
    steps = _steps(batch)
    for index, (_, step) in enumerate(steps):
        try:
            step()
        except DatabaseUnavailable:
            return [op for ops, _ in steps[index:] for op in ops]
    return []


def _steps(batch: list[_Op]) -> list[Step]:
    steps: list[Step] = []
    creates: list[_Op] = []
    turns: list[_PendingTurn] = []
    unsaved: dict[tuple[int, int], _PendingTurn] = {}
    ends: list[_EndCall] = []
    applied: list[_Op] = []

    def flush() -> None:
        nonlocal creates, turns, unsaved, ends, applied
        if creates:
            steps.append((creates, partial(_insert, turns)))
        if ends:
            steps.append((list(ends), partial(_end, ends)))
        if applied:
            steps.append((applied, _nothing))  # resolved once everything before it is applied
        creates, turns, unsaved, ends, applied = [], [], {}, [], []

    for op in batch:
        if isinstance(op, _CreateTurn):
            # A call answered while the database was away gets its pk from its _EnsureCall, an
            # earlier step: the Turn is built when its step runs.
            creates.append(op)
            turns.append(_PendingTurn(op))
            unsaved[(id(op.call), op.fields["sequence"])] = turns[-1]
        elif isinstance(op, _UpdateTurn) and (id(op.call), op.sequence) in unsaved:
            creates.append(op)
            unsaved[(id(op.call), op.sequence)].fields.update(op.fields)
        elif isinstance(op, _EndCall):
            ends.append(op)
        elif isinstance(op, _Applied):
            applied.append(op)
        else:
            flush()
            steps.append(([op], partial(_write, op)))
    flush()
    return steps


def _nothing() -> None:
    return None


@dataclass(slots=True)
class _PendingTurn:
    """A turn to insert: its fields, with the updates queued before it was written folded in."""

    create: _CreateTurn
    fields: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.fields = dict(self.create.fields)

    def build(self) -> Turn:
        return Turn(call=self.create.call, **self.fields)


def _end(ends: list[_EndCall]) -> None:
    for source in dict.fromkeys(end.source for end in ends):
        group = [end for end in ends if end.source == source]
        try:
            sessions = {end.call.pk: end.session_id for end in group}
            _attempt(calls_ended, list(sessions), source=source, sessions=sessions)
            continue
        except DatabaseUnavailable:
            raise
        except Exception:
            logger.exception("ending %s calls at once failed; ending them one by one", len(group))
        for end in group:
            ended = partial(calls_ended, [end.call.pk], source=source, sessions={end.call.pk: end.session_id})
            _write(_Run(end.call, ended))


def _insert(pending: list[_PendingTurn]) -> None:
    if not pending:
        return
    turns = [turn.build() for turn in pending]
    try:
        _attempt(Turn.objects.bulk_create, turns)
        return
    except DatabaseUnavailable:
        raise
    except Exception:
        logger.exception("inserting %s turns at once failed; inserting them one by one", len(turns))
    for turn in turns:  # one bad turn must not cost the other calls theirs
        turn.pk = None
        _write(_Run(turn.call, partial(_insert_one, turn)))


def _insert_one(turn: Turn) -> None:
    try:
        turn.save(force_insert=True)
    except IntegrityError:
        # Stored already when the connection dropped before the commit was acknowledged: the
        # same turn is there, so this is not a clash.
        same = {"role": turn.role, "text": turn.text, "generated_text": turn.generated_text}
        if not Turn.objects.filter(call_id=turn.call_id, sequence=turn.sequence, **same).exists():
            raise
        logger.info("call %s turn %s was stored already", turn.call.call_sid, turn.sequence)


def _write(op: _UpdateTurn | _Run) -> None:
    try:
        if isinstance(op, _UpdateTurn):
            _attempt(Turn.objects.filter(call_id=op.call.pk, sequence=op.sequence).update, **op.fields)
        else:
            _attempt(op.write)
    except DatabaseUnavailable:
        raise
    except Exception:
        # One bad write must not cost the call its other turns.
        logger.exception("call %s: a database write failed", op.call.call_sid)
