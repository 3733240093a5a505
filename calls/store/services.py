"""Operations on calls that the Twilio webhooks share: the voice webhook starts a call here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import models, transaction
from django.utils import timezone

from agents import directory
from agents.models import Persona, PersonaLanguage
from calls.engine.events import CallStart, IncomingCall
from calls.models import Call, Turn
from calls.store.db import DATABASE_DOWN, save_each

logger = logging.getLogger(__name__)


class NoPersonaAvailable(Exception):
    """Neither a routed persona nor an active default persona can take the call."""


def persona_for_number(to_number: str) -> Persona:
    """The active persona answering `to_number`; raises NoPersonaAvailable when there is none."""
    try:
        persona = directory.persona_for_number(to_number)
    except Persona.DoesNotExist as exc:
        raise NoPersonaAvailable(f"no persona routed to {to_number!r} and no default persona") from exc
    # for_number only skips inactive routed personas; the default could have been switched off
    # with a bulk update that bypassed Persona.clean().
    if not persona.is_active:
        raise NoPersonaAvailable(f"the default persona {persona.slug!r} is inactive")
    return persona


def _direction(value: str) -> str:
    # Twilio also sends trunking-* values for SIP trunks; those calls reach us as incoming ones.
    return value if value in Call.Direction.values else Call.Direction.INBOUND


def _fit(value: str, field: str) -> str:
    # `From` can be a long SIP URI or client identity; a truncated number beats a 500 mid-ring.
    column = Call._meta.get_field(field)
    assert isinstance(column, models.CharField)
    return value[: column.max_length]


def _described(incoming: IncomingCall) -> dict[str, str]:
    """The call's columns that Twilio's description sets, fitted to them."""
    return {
        "from_number": _fit(incoming.from_number, "from_number"),
        "to_number": _fit(incoming.to_number, "to_number"),
        "direction": _direction(incoming.direction),
    }


def _new_call(incoming: IncomingCall, now: datetime) -> Call:
    """An unsaved call for `incoming`, routed by the number called; raises NoPersonaAvailable."""
    persona = persona_for_number(incoming.to_number)
    return Call(call_sid=incoming.call_sid, persona=persona, started_at=now, **_described(incoming))


def _together_else_alone[T, R](
    apply: Callable[[list[T]], list[R | Exception]], items: list[T], what: str
) -> list[R | Exception]:
    """`apply` to all `items` in one go; should that fail as a whole, to each alone, so that one
    bad item fails alone (a race with another process then also settles: the retry finds the row
    the other one inserted). A dropped connection is left to in_db_thread's `reconnecting`, which
    runs them all again. `what` names the work in the log, with %s for the count."""
    try:
        return apply(items)
    except DATABASE_DOWN:
        raise
    except Exception:
        logger.exception("%s at once failed; %s them one by one", what % len(items), what.split()[0])
    results: list[R | Exception] = []
    for item in items:
        try:
            results.extend(apply([item]))
        except Exception as exc:
            results.append(exc)
    return results


@dataclass(frozen=True)
class StartedCall:
    """A call the voice webhook connects to the relay, with the languages its TwiML declares."""

    call: Call  # its persona is shared by every call of this process (agents.directory): read only
    switchable: tuple[PersonaLanguage, ...]

    @property
    def persona(self) -> Persona:
        return self.call.persona


def calls_start(incoming: list[IncomingCall]) -> list[StartedCall | Exception]:
    """Create (or, when Twilio retries the webhook, update) the calls of voice webhooks that
    arrive together: a result for each, in order, or the exception it alone met
    (NoPersonaAvailable when no active persona can answer).

    A call stays `ringing` until its relay socket's setup marks it in progress. A retry keeps the
    persona chosen first, since the greeting already stored belongs to it. The persona's welcome
    greeting is stored once, as turn 0, so the model knows what the caller heard first.

    Every call begins with this webhook, so a busy minute brings them in bursts. One by one, each
    took a dozen queries on a database connection opened for it; at 100 new calls a second they
    waited seconds (bench/relay_load.py --webhook). Together, on the database thread every call
    shares: five queries a batch.
    """
    return _together_else_alone(_start_calls, incoming, "starting %s calls")


def _started(call: Call) -> StartedCall:
    entry = directory.persona_entry(call.persona_id)
    call.persona = entry.persona
    return StartedCall(call, entry.switchable)


@transaction.atomic
def _start_calls(incoming: list[IncomingCall]) -> list[StartedCall | Exception]:
    now = timezone.now()
    sids = {one.call_sid for one in incoming}
    # FOR UPDATE serialises retries that overlap; a first delivery racing this batch in another
    # process fails it on call_sid's uniqueness, and the retry alone finds that row.
    calls = {call.call_sid: call for call in Call.objects.select_for_update().filter(call_sid__in=sids)}
    retried = list(calls.values())
    failed: dict[str, Exception] = {}
    new: dict[str, Call] = {}
    for one in incoming:
        call = calls.get(one.call_sid) or new.get(one.call_sid)
        if call is None:
            try:
                new[one.call_sid] = _new_call(one, now)
            except NoPersonaAvailable as exc:
                failed[one.call_sid] = exc
            continue
        for name, value in _described(one).items():  # a retry: new numbers, the same persona
            setattr(call, name, value)
        call.started_at = call.started_at or now
    Call.objects.bulk_create(new.values())
    save_each(retried, ["from_number", "to_number", "direction", "started_at", "updated_at"])
    calls.update(new)

    started = {sid: _started(call) for sid, call in calls.items()}
    # The greeting is turn 0 of a new call; a retried call keeps the one it has.
    Turn.objects.bulk_create(
        [
            Turn(call=call, sequence=0, role=Turn.Role.ASSISTANT, text=greeting, generated_text=greeting)
            for sid, call in calls.items()
            if (greeting := started[sid].persona.welcome_greeting)
        ],
        ignore_conflicts=True,
    )
    return [started.get(one.call_sid) or failed[one.call_sid] for one in incoming]


@dataclass(frozen=True)
class RelaySession:
    """What a relay socket needs to run a call, loaded in one go."""

    call: Call
    turns: list[Turn]
    languages: list[str]  # the persona's own first, then the ones it may switch to
    offline: bool = False  # bound while the database was away: the call's row is written later
    previous_session: str = ""  # the session the call was bound to before this one


def relay_sessions_start(starts: list[CallStart]) -> list[RelaySession | Exception]:
    """Bind relay sessions to their calls, marked in progress, with their histories: a result for
    each start, in order, or the exception that start alone met.

    Sockets open in bursts (a busy minute, a restart), so the starts that arrive together are
    bound together: a handful of queries in all instead of five for each. A call is created here
    when the voice webhook never ran, routed by `to_number` like the webhook would.
    """
    return _together_else_alone(_start_sessions, starts, "binding %s relay sessions")


@transaction.atomic
def _start_sessions(starts: list[CallStart]) -> list[RelaySession | Exception]:
    now = timezone.now()
    sids = {start.call_sid for start in starts}
    calls = {call.call_sid: call for call in Call.objects.select_for_update().filter(call_sid__in=sids)}
    failed: dict[str, Exception] = {}
    new: dict[str, Call] = {}
    for start in starts:
        if start.call_sid in calls or start.call_sid in new or start.call_sid in failed:
            continue
        logger.warning("call %s: relay setup for a call the voice webhook never saw", start.call_sid)
        try:
            new[start.call_sid] = _new_call(start, now)
        except NoPersonaAvailable as exc:
            failed[start.call_sid] = exc
    # A voice webhook inserting one of these meanwhile fails the whole batch on call_sid's
    # uniqueness; the caller then binds each start alone, finding that call.
    calls.update((call.call_sid, call) for call in Call.objects.bulk_create(new.values()))

    entries = {}
    previous: dict[str, str] = {}
    for start in starts:
        call = calls.get(start.call_sid)
        if call is None:
            continue
        previous.setdefault(start.call_sid, call.session_id)
        entry = entries[start.call_sid] = directory.persona_entry(call.persona_id)
        call.persona = entry.persona
        call.session_id = start.session_id
        call.metadata = {**call.metadata, "customParameters": start.custom_parameters}
        if not call.is_over:
            call.status = Call.Status.IN_PROGRESS
        call.started_at = call.started_at or now
    bound = [calls[sid] for sid in entries]
    save_each(bound, ["session_id", "metadata", "status", "started_at", "updated_at"])

    histories: dict[int, list[Turn]] = {call.pk: [] for call in bound}
    for turn in Turn.objects.filter(call__in=bound).in_order():
        histories[turn.call_id].append(turn)
    return [
        RelaySession(
            call,
            histories[call.pk],
            entries[start.call_sid].languages,
            previous_session=previous[start.call_sid],
        )
        if (call := calls.get(start.call_sid)) is not None
        else failed[start.call_sid]
        for start in starts
    ]
