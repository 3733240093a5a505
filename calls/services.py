"""Operations on calls that the Twilio webhooks share: the voice webhook starts a call here."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from agents import directory
from agents.models import Persona, PersonaLanguage
from calls.db import save_each
from calls.models import Call, Turn

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
    return value[: Call._meta.get_field(field).max_length]


@transaction.atomic
def call_start(*, call_sid: str, from_number: str, to_number: str, direction: str) -> Call:
    """Create (or, when Twilio retries the webhook, update) the call, routed by `to_number`.

    The call stays `ringing` until the relay socket's setup marks it in progress. A retry keeps
    the persona chosen first, since the greeting already stored belongs to it. The persona's
    welcome greeting is stored once, as turn 0, so the model knows what the caller heard first.
    Raises NoPersonaAvailable when no active persona can answer.
    """
    fields = {
        "from_number": _fit(from_number, "from_number"),
        "to_number": _fit(to_number, "to_number"),
        "direction": _direction(direction),
    }
    # FOR UPDATE serialises retries that overlap; two concurrent first deliveries are settled by
    # the unique call_sid (the loser's insert waits for the winner's, then finds its row). The
    # persona is a callable so it is routed only when the call is new.
    call, created = Call.objects.select_for_update().get_or_create(
        call_sid=call_sid,
        defaults={**fields, "persona": lambda: persona_for_number(to_number), "started_at": timezone.now},
    )
    if not created:
        for name, value in fields.items():
            setattr(call, name, value)
        call.started_at = call.started_at or timezone.now()
        call.save(update_fields=[*fields, "started_at", "updated_at"])

    greeting = call.persona.welcome_greeting
    if greeting:
        Turn.objects.get_or_create(
            call=call,
            sequence=0,
            defaults={"role": Turn.Role.ASSISTANT, "text": greeting, "generated_text": greeting},
        )
    return call


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """The voice webhook's form: a call Twilio is putting through to us."""

    call_sid: str
    from_number: str = ""
    to_number: str = ""
    direction: str = ""


@dataclass(frozen=True)
class StartedCall:
    """A call the voice webhook connects to the relay, with what its TwiML declares."""

    call: Call
    persona: Persona  # shared by every call of this process (agents.directory): read only
    switchable: tuple[PersonaLanguage, ...]


def calls_start(incoming: list[IncomingCall]) -> list[StartedCall | Exception]:
    """`call_start` for voice webhooks that arrive together: a result for each, in order, or the
    exception it alone met (NoPersonaAvailable).

    Every call begins with this webhook, so a busy minute brings them in bursts. One by one, each
    took a dozen queries on a database connection opened for it; at 100 new calls a second they
    waited seconds (bench/relay_load.py --webhook). Together, on the database thread every call
    shares: five queries a batch. Should the batch fail as a whole (a concurrent delivery of the
    same call inserted it first), each is started alone by `call_start`, which settles such races;
    a dropped connection is left to `reconnecting`, which runs the batch again.
    """
    try:
        return _start_calls(incoming)
    except (InterfaceError, OperationalError):
        raise  # a dropped connection: in_db_thread's `reconnecting` runs the batch again
    except Exception:
        logger.exception("starting %s calls at once failed; starting them one by one", len(incoming))
    results: list[StartedCall | Exception] = []
    for one in incoming:
        try:
            results.append(_started(call_start(**asdict(one))))
        except Exception as exc:
            results.append(exc)
    return results


def _started(call: Call) -> StartedCall:
    entry = directory.persona_entry(call.persona_id)
    return StartedCall(call, entry.persona, entry.switchable)


@transaction.atomic
def _start_calls(incoming: list[IncomingCall]) -> list[StartedCall | Exception]:
    now = timezone.now()
    sids = {one.call_sid for one in incoming}
    calls = {call.call_sid: call for call in Call.objects.select_for_update().filter(call_sid__in=sids)}
    retried = list(calls.values())
    failed: dict[str, Exception] = {}
    new: dict[str, Call] = {}
    for one in incoming:
        fields = {
            "from_number": _fit(one.from_number, "from_number"),
            "to_number": _fit(one.to_number, "to_number"),
            "direction": _direction(one.direction),
        }
        call = calls.get(one.call_sid) or new.get(one.call_sid)
        if call is not None:  # a retry: as call_start, new numbers but the persona it began with
            for name, value in fields.items():
                setattr(call, name, value)
            call.started_at = call.started_at or now
            continue
        try:
            persona = persona_for_number(one.to_number)
        except NoPersonaAvailable as exc:
            failed[one.call_sid] = exc
            continue
        new[one.call_sid] = Call(call_sid=one.call_sid, persona=persona, started_at=now, **fields)
    Call.objects.bulk_create(new.values())
    save_each(retried, ["from_number", "to_number", "direction", "started_at", "updated_at"])
    calls.update(new)

    started = {sid: _started(call) for sid, call in calls.items()}
    # The greeting is turn 0 of a new call; a retried call keeps the one it has (as get_or_create).
    Turn.objects.bulk_create(
        [
            Turn(call=call, sequence=0, role=Turn.Role.ASSISTANT, text=greeting, generated_text=greeting)
            for sid, call in calls.items()
            if (greeting := started[sid].persona.welcome_greeting)
        ],
        ignore_conflicts=True,
    )
    return [started.get(one.call_sid) or failed[one.call_sid] for one in incoming]


@dataclass(frozen=True, slots=True)
class CallStart:
    """A relay socket's `setup`: which call it carries, as Twilio describes it."""

    call_sid: str
    session_id: str = ""
    from_number: str = ""
    to_number: str = ""
    direction: str = "inbound"
    custom_parameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RelaySession:
    """What a relay socket needs to run a call, loaded in one go."""

    call: Call
    turns: list[Turn]
    languages: list[str]  # the persona's own first, then the ones it may switch to


def relay_sessions_start(starts: list[CallStart]) -> list[RelaySession | Exception]:
    """Bind relay sessions to their calls, marked in progress, with their histories: a result for
    each start, in order, or the exception that start alone met.

    Sockets open in bursts (a busy minute, a restart), so the starts that arrive together are
    bound together: a handful of queries in all instead of five for each. A call is created here
    when the voice webhook never ran, routed by `to_number` like the webhook would. Should the
    batch fail as a whole, each start is tried on its own so that one bad start fails alone.
    """
    try:
        return _start_sessions(starts)
    except Exception:
        if len(starts) == 1:
            raise
        logger.exception("binding %s relay sessions at once failed; binding them one by one", len(starts))
    results: list[RelaySession | Exception] = []
    for start in starts:
        try:
            results.extend(_start_sessions([start]))
        except Exception as exc:
            results.append(exc)
    return results


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
            persona = persona_for_number(start.to_number)
        except NoPersonaAvailable as exc:
            failed[start.call_sid] = exc
            continue
        new[start.call_sid] = Call(
            call_sid=start.call_sid,
            persona=persona,
            from_number=_fit(start.from_number, "from_number"),
            to_number=_fit(start.to_number, "to_number"),
            direction=_direction(start.direction),
        )
    # A voice webhook inserting one of these meanwhile fails the whole batch on call_sid's
    # uniqueness; the caller then binds each start alone, finding that call.
    calls.update((call.call_sid, call) for call in Call.objects.bulk_create(new.values()))

    entries = {}
    for start in starts:
        call = calls.get(start.call_sid)
        if call is None:
            continue
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
        RelaySession(call, histories[call.pk], entries[start.call_sid].languages)
        if (call := calls.get(start.call_sid)) is not None
        else failed[start.call_sid]
        for start in starts
    ]
