"""The in-process persona directory: call starts read personas from memory, and an edit saved
anywhere in this process reaches the next call at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from agents import directory
from agents.models import Persona, PersonaLanguage, PhoneNumber

pytestmark = pytest.mark.django_db


def test_a_persona_is_read_once_then_served_from_memory(default_persona, django_assert_num_queries):
    with django_assert_num_queries(2):  # the persona, its languages
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
