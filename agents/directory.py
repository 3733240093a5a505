"""Personas as live calls read them: loaded once per process, then served from memory.

Every call start needs its persona (about forty columns), its languages and, for a number, the
routing; read from the database each time that is several milliseconds of ORM work per call on
the one database thread that all live calls share. Personas change rarely, so this process keeps
them until one of them, its languages or a phone number is saved or deleted here (signals), and
for at most TTL_SECONDS, which bounds how long another process can serve an edit made elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from agents.models import Persona, PersonaLanguage, PhoneNumber

TTL_SECONDS = 30.0


@dataclass(frozen=True)
class PersonaEntry:
    persona: Persona
    # The languages it may switch to, by code, as the voice webhook's TwiML declares them.
    switchable: tuple[PersonaLanguage, ...]

    @property
    def languages(self) -> list[str]:
        """Its own language first, then the ones it may switch to."""
        return [self.persona.language, *(language.code for language in self.switchable)]


_lock = threading.Lock()
_personas: dict[int, tuple[PersonaEntry, float]] = {}  # with when each was loaded
_routes: dict[str, tuple[int, float]] = {}
_generation = 0  # counts forgets: a load that a forget overtook is not kept


def persona_entry(persona_id: int) -> PersonaEntry:
    """The persona with its languages; shared between calls, so never modify what it returns."""

    def load() -> PersonaEntry:
        persona = Persona.objects.get(pk=persona_id)
        return PersonaEntry(persona, tuple(persona.languages.order_by("code")))

    return _cached(_personas, persona_id, load)


def persona_for_number(number: str) -> Persona:
    """The persona answering `number` (routed, else the default); raises Persona.DoesNotExist."""
    persona_id = _cached(_routes, number, lambda: Persona.objects.for_number(number).pk)
    return persona_entry(persona_id).persona


def _cached[K, V](store: dict[K, tuple[V, float]], key: K, load: Callable[[], V]) -> V:
    """`store`'s value for `key` while younger than TTL_SECONDS, else `load()`'s, kept unless a
    forget overtook the load."""
    cached = store.get(key)
    if cached is not None and time.monotonic() - cached[1] <= TTL_SECONDS:
        return cached[0]
    generation = _generation
    value = load()
    with _lock:
        if generation == _generation:
            store[key] = (value, time.monotonic())
    return value


def forget(**_: object) -> None:
    """Drop everything: the next call start reads personas and routes afresh. Called inside the
    saving transaction, so again once it commits: a call starting in between reads, and would
    keep, the row as it was."""
    _clear()
    if transaction.get_connection().in_atomic_block:  # else the save is committed already
        transaction.on_commit(_clear)


def _clear() -> None:
    global _generation
    with _lock:
        _generation += 1
        _personas.clear()
        _routes.clear()


for _model in (Persona, PersonaLanguage, PhoneNumber):
    post_save.connect(forget, sender=_model, dispatch_uid=f"directory-forget-save-{_model.__name__}")
    post_delete.connect(forget, sender=_model, dispatch_uid=f"directory-forget-delete-{_model.__name__}")
