"""Calls that arrive while the database cannot be reached (a restart, a failover).

Twilio waits seconds at most for the voice webhook, and a 500 fails the call. So while the
database is away a call is still answered, and its socket still converses: the persona comes from
the persona directory's memory (agents/directory.py keeps serving what it last loaded), the call
and its greeting are rows to write later, and the call's recorder queues them before its turns.
Its writes wait, in order, until the database is back (calls/store/recorder.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from asgiref.sync import sync_to_async
from django.db import OperationalError, transaction
from django.utils import timezone

from agents import directory
from calls.engine.events import CallStart, IncomingCall
from calls.models import Call, Turn
from calls.store.recorder import CallRecorder
from calls.store.services import RelaySession, StartedCall, _new_call

logger = logging.getLogger(__name__)

ANSWERED_KEPT = 10_000  # calls answered while the database was away, awaiting their sockets

_answered: OrderedDict[str, Call] = OrderedDict()


async def call_answer_offline(incoming: IncomingCall) -> StartedCall:
    """Answer a call without the database: an unsaved call routed from memory, stored (with its
    greeting as turn 0) once the database is back. Raises NoPersonaAvailable, or the database
    error when no persona for the number was ever loaded by this process."""
    call, entry = await _call_for(incoming)
    _answered[call.call_sid] = call
    while len(_answered) > ANSWERED_KEPT:
        _answered.popitem(last=False)
    CallRecorder(call).then(lambda: call_row_ensure(call))
    logger.warning("call %s answered without the database: stored when it is back", call.call_sid)
    return StartedCall(call, entry.switchable)


async def _call_for(incoming: IncomingCall) -> tuple[Call, directory.PersonaEntry]:
    """An unsaved call for `incoming`, routed as the voice webhook routes it, with its persona's
    entry as the directory last loaded it. On a thread: the directory tries the database first
    (a sync ORM call), and serves what it kept when that fails."""

    def route() -> tuple[Call, directory.PersonaEntry]:
        call = _new_call(incoming, timezone.now())
        return call, directory.persona_entry(call.persona_id)

    return await sync_to_async(route, thread_sensitive=False)()


def answered_offline(call_sid: str) -> bool:
    """This process answered the call while the database was away (its socket may bind to it)."""
    return call_sid in _answered


async def session_start_offline(start: CallStart) -> RelaySession:
    """Bind a socket's session to its call without the database. The history is the greeting
    alone, so a call that was conversing before (a reconnect, which its TwiML marks `resumed`)
    cannot go on: the database error is raised again."""
    if start.custom_parameters.get("resumed"):
        raise OperationalError(
            f"call {start.call_sid} resumes a history the database holds, and it is unreachable"
        )
    call = _answered.pop(start.call_sid, None)
    if call is None:
        call, entry = await _call_for(start)
        logger.warning(
            "call %s: session bound without the database, for a call answered elsewhere", call.call_sid
        )
    else:
        entry = await sync_to_async(directory.persona_entry, thread_sensitive=False)(call.persona_id)
    call.persona = entry.persona
    call.session_id = start.session_id
    call.status = Call.Status.IN_PROGRESS
    call.metadata = {**call.metadata, "customParameters": start.custom_parameters}
    greeting = entry.persona.welcome_greeting
    turns = [_greeting(call, greeting)] if greeting else []
    return RelaySession(call, turns, entry.languages, offline=True)


def _greeting(call: Call, greeting: str) -> Turn:
    return Turn(call=call, sequence=0, role=Turn.Role.ASSISTANT, text=greeting, generated_text=greeting)


@transaction.atomic
def call_row_ensure(call: Call) -> None:
    """Store a call answered while the database was away, with its greeting; or, if its row was
    stored meanwhile (by its webhook's write, or another process), take that row's id and bind
    the session. Queued first on the call's recorder, so its turns find the row."""
    row = Call.objects.select_for_update().filter(call_sid=call.call_sid).first()
    if row is None:
        call.save(force_insert=True)
        if greeting := call.persona.welcome_greeting:
            _greeting(call, greeting).save(force_insert=True)
        logger.info("call %s stored after the database came back", call.call_sid)
        return
    call.pk = row.pk
    if call.session_id and call.session_id != row.session_id:
        row.session_id = call.session_id
        row.metadata = {**row.metadata, **call.metadata}
        if not row.is_over:
            row.status = Call.Status.IN_PROGRESS
        row.save(update_fields=["session_id", "metadata", "status", "updated_at"])
