"""Personas as live calls read them: loaded once per process, then served from memory.

Every call start needs its persona (about forty columns), its languages and, for a number, the
routing; read from the database each time that is several milliseconds of ORM work per call on
the one database thread that all live calls share. Personas change rarely, so this process keeps
them until one of them, its languages or a phone number is saved or deleted (signals here, the
change feed from other processes: agents.persona_feed), and for at most TTL_SECONDS, which bounds
how long an edit can go unseen while that feed is down.

An edit also reaches calls already in progress: after each change a thread of the feed's reloads
the personas this process holds, and `current()` hands a live call the newest copy for its next
reply.

What was loaded last is kept through a database outage: a reload that cannot reach the database
serves it (stale) rather than failing the call, and tries again every OUTAGE_RETRY_SECONDS.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ObjectDoesNotExist
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.db.models.signals import post_delete, post_save

from agents import persona_feed
from agents.models import Persona, PersonaLanguage, PersonaTool, PhoneNumber

logger = logging.getLogger(__name__)

TTL_SECONDS = 30.0
# During an outage each attempt may wait for a connection to fail: at most one a second per entry.
OUTAGE_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class PersonaEntry:
    persona: Persona
    # The languages it may switch to, by code, as the voice webhook's TwiML declares them.
    switchable: tuple[PersonaLanguage, ...]
    # Its active HTTP tools, loaded with it so that a call never queries for them on the event loop.
    http_tools: tuple[PersonaTool, ...] = ()

    @property
    def languages(self) -> list[str]:
        """Its own language first, then the ones it may switch to."""
        return [self.persona.language, *(language.code for language in self.switchable)]


@dataclass(frozen=True)
class _Kept[V]:
    value: V
    loaded_at: float  # time.monotonic()
    generation: int  # fresh only while no forget has happened since
    stale: bool = False  # served from memory because the database was unreachable

    def fresh(self) -> bool:
        # TTL_SECONDS is read here, not at load time, so a change applies to what is kept already.
        ttl = OUTAGE_RETRY_SECONDS if self.stale else TTL_SECONDS
        return self.generation == _generation and time.monotonic() - self.loaded_at <= ttl


_lock = threading.Lock()
# Entries outlive forgets (they are only no longer fresh): the last copy loaded is what an outage
# serves and what `current()` returns. Only a persona found deleted is dropped.
_personas: dict[int, _Kept[PersonaEntry]] = {}
_routes: dict[str, _Kept[int]] = {}
_generation = 0  # counts forgets: a load that a forget overtook is not kept
_outage = False  # a reload failed for want of the database, and none has succeeded since


def persona_entry(persona_id: int) -> PersonaEntry:
    """The persona with its languages; shared between calls, so never modify what it returns."""

    def load() -> PersonaEntry:
        persona = Persona.objects.get(pk=persona_id)
        return PersonaEntry(
            persona,
            tuple(persona.languages.order_by("code")),
            tuple(persona.http_tools.filter(is_active=True).order_by("name")),
        )

    return _cached(_personas, persona_id, load)


def persona_for_number(number: str) -> Persona:
    """The persona answering `number` (routed, else the default); raises Persona.DoesNotExist.
    During a database outage, the one last loaded for it (OperationalError if none was)."""
    persona_id = _cached(_routes, number, lambda: Persona.objects.for_number(number).pk)
    return persona_entry(persona_id).persona


def current(persona: Persona) -> Persona:
    """The newest copy of `persona` this process has loaded (`persona` itself if none): what a
    live call should use for its next reply. A dict lookup, no database: safe on the event loop.
    A different object from `persona` means it was edited since."""
    kept = _personas.get(persona.pk)
    return persona if kept is None else kept.value.persona


def http_tools(persona: Persona) -> tuple[PersonaTool, ...]:
    """The active HTTP tools of the newest copy of `persona` this process has loaded (none if it
    has loaded none): a dict lookup, safe on the event loop, like `current()`."""
    kept = _personas.get(persona.pk)
    return () if kept is None else kept.value.http_tools


def _cached[K, V](store: dict[K, _Kept[V]], key: K, load: Callable[[], V]) -> V:
    """`store`'s value for `key` while fresh, else `load()`'s, kept unless a forget overtook the
    load; the value kept before when the database is unreachable."""
    kept = store.get(key)
    if kept is not None and kept.fresh():
        return kept.value
    persona_feed.start(forget=_clear, reload=_reload_held)  # once per process: hear of edits from now on
    generation = _generation
    try:
        value = load()
    except (OperationalError, InterfaceError) as exc:
        if kept is None:
            raise
        _outage_began(exc)
        with _lock:  # served as is until OUTAGE_RETRY_SECONDS have passed, or a forget
            store[key] = _Kept(kept.value, time.monotonic(), generation, stale=True)
        return kept.value
    except ObjectDoesNotExist:
        with _lock:
            store.pop(key, None)  # deleted (or no default any more): nothing to serve later
        raise
    _outage_ended()
    with _lock:
        if generation == _generation:
            store[key] = _Kept(value, time.monotonic(), generation)
    return value


def _outage_began(exc: Exception) -> None:
    global _outage
    if not _outage:  # once per outage: every call start would log it otherwise
        _outage = True
        logger.warning("database unreachable, serving personas as last loaded: %s", exc)


def _outage_ended() -> None:
    global _outage
    if _outage:
        _outage = False
        logger.info("database reachable again: personas are reloaded")


def forget(sender: type[models.Model] | None = None, instance: object = None, **_: object) -> None:
    """Drop everything: the next call start reads personas and routes afresh, and once the change
    commits every process hears of it (agents.persona_feed). Called inside the saving transaction,
    so again once it commits: a call starting in between reads, and would keep, the row as it was."""
    _clear()
    change = {
        "model": sender._meta.label_lower if sender is not None else None,
        "pk": getattr(instance, "pk", None),
    }
    transaction.on_commit(lambda: _committed(change))  # at once if the save is committed already


def _committed(change: dict) -> None:
    _clear()
    persona_feed.announce(change)


def _reload_held() -> None:
    """Reload the personas this process holds (forgotten already), so that live calls' next
    replies (`current()`) use the edit. Runs on the feed's thread, on a connection of its own."""
    try:
        for persona_id in list(_personas):
            # A deleted one is dropped; its live calls keep the copy they have.
            with contextlib.suppress(ObjectDoesNotExist):
                persona_entry(persona_id)
    finally:
        connection.close()  # this thread's own; CONN_MAX_AGE=0 keeps none open between uses


def _clear() -> None:
    global _generation
    with _lock:
        _generation += 1


def reset() -> None:
    """Drop every entry, stale ones too, as a fresh process starts; for tests, whose database
    flushes send no signals."""
    global _generation
    with _lock:
        _generation += 1
        _personas.clear()
        _routes.clear()


for _model in (Persona, PersonaLanguage, PhoneNumber, PersonaTool):
    post_save.connect(forget, sender=_model, dispatch_uid=f"directory-forget-save-{_model.__name__}")
    post_delete.connect(forget, sender=_model, dispatch_uid=f"directory-forget-delete-{_model.__name__}")
