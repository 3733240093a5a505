"""The in-process persona directory: call starts read personas from memory, and an edit saved
anywhere in this process reaches the next call at once."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection, transaction

from agents import directory
from agents.models import Persona, PersonaLanguage, PhoneNumber

pytestmark = pytest.mark.django_db


def test_a_persona_is_read_once_then_served_from_memory(default_persona, django_assert_num_queries):
    with django_assert_num_queries(3):  # the persona, its languages, its HTTP tools
        first = directory.persona_entry(default_persona.pk)
    with django_assert_num_queries(0):
        assert directory.persona_entry(default_persona.pk) is first
    assert first.languages == [default_persona.language]


def test_saving_a_persona_its_languages_or_a_number_is_seen_by_the_next_call(default_persona, other_persona):
    assert directory.persona_for_number("+14155550111") == default_persona
    PhoneNumber.objects.create(number="+14155550111", persona=other_persona)
    assert directory.persona_for_number("+14155550111") == other_persona

    PersonaLanguage.objects.create(persona=other_persona, code="es-MX")
    assert directory.persona_entry(other_persona.pk).languages == [other_persona.language, "es-MX"]

    other_persona.system_prompt = "Be brief."
    other_persona.save()
    assert directory.persona_entry(other_persona.pk).persona.system_prompt == "Be brief."


def test_switching_the_default_is_seen_although_it_is_a_bulk_update(default_persona, other_persona):
    assert directory.persona_for_number("+10000000000") == default_persona
    Persona.objects.make_default(other_persona)
    assert directory.persona_for_number("+10000000000") == other_persona


def test_entries_expire_so_other_processes_edits_arrive(default_persona, monkeypatch):
    directory.persona_entry(default_persona.pk)
    Persona.objects.filter(pk=default_persona.pk).update(system_prompt="Edited elsewhere.")  # no signal here
    assert directory.persona_entry(default_persona.pk).persona.system_prompt != "Edited elsewhere."
    monkeypatch.setattr(directory, "TTL_SECONDS", 0.0)
    assert directory.persona_entry(default_persona.pk).persona.system_prompt == "Edited elsewhere."


@pytest.mark.django_db(transaction=True)
def test_a_call_starting_while_an_edit_is_uncommitted_does_not_keep_the_old_persona(default_persona):
    def call_start() -> str:  # another thread, as a live call's database thread is
        try:
            return directory.persona_entry(default_persona.pk).persona.system_prompt
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as other_thread:
        with transaction.atomic():
            default_persona.system_prompt = "Be brief."
            default_persona.save()  # forgets at once, but the edit is not committed yet
            assert other_thread.submit(call_start).result(10) != "Be brief."  # reads the old row
        assert other_thread.submit(call_start).result(10) == "Be brief."  # forgotten on commit


def test_a_live_call_keeps_its_copy_until_this_process_loads_a_newer_one(default_persona):
    live = directory.persona_entry(default_persona.pk).persona
    assert directory.current(live) is live
    default_persona.system_prompt = "Be brief."
    default_persona.save()  # forgets: the next load is the edit
    fresh = directory.persona_entry(default_persona.pk).persona
    assert directory.current(live) is fresh
    assert fresh.system_prompt == "Be brief."


def test_a_persona_never_loaded_here_is_its_own_current_copy(other_persona):
    assert directory.current(other_persona) is other_persona


async def test_during_a_database_outage_what_was_loaded_last_is_served(
    default_persona, database_outage, monkeypatch, caplog
):
    # On asgiref's thread, as the voice webhook and the live calls' database thread load.
    load = sync_to_async(lambda: directory.persona_for_number("+14155550111"))
    assert await load() == default_persona
    monkeypatch.setattr(directory, "TTL_SECONDS", 0.0)  # every call start reloads...
    monkeypatch.setattr(directory, "OUTAGE_RETRY_SECONDS", 0.0)  # ...and tries the database again

    database_outage.cut()
    with caplog.at_level(logging.INFO, logger="agents.directory"):
        first, second = await load(), await load()  # a dropped connection, then a closed one
        assert first.pk == second.pk == default_persona.pk
        assert first.system_prompt == default_persona.system_prompt
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per outage, not once per call
        assert "database unreachable" in warnings[0].getMessage()

        database_outage.restore()
        await sync_to_async(lambda: connection.close())()  # what the database thread does on errors
        await sync_to_async(
            lambda: Persona.objects.filter(pk=default_persona.pk).update(system_prompt="Back.")
        )()
        assert (await load()).system_prompt == "Back."
    assert "reachable again" in caplog.records[-1].getMessage()


async def test_an_outage_before_anything_was_loaded_still_fails(default_persona, database_outage):
    database_outage.cut()
    with pytest.raises(OperationalError):
        await sync_to_async(lambda: directory.persona_for_number("+14155550111"))()


async def test_a_stale_entry_waits_before_the_database_is_tried_again(
    default_persona, database_outage, monkeypatch
):
    load = sync_to_async(lambda: directory.persona_entry(default_persona.pk))
    await load()
    monkeypatch.setattr(directory, "TTL_SECONDS", 0.0)
    database_outage.cut()
    await load()  # tries, fails, serves the stale entry
    refused = database_outage.refused
    await sync_to_async(lambda: connection.close())()  # a new connection would be refused...
    await load()
    assert database_outage.refused == refused  # ...but none was tried within OUTAGE_RETRY_SECONDS
