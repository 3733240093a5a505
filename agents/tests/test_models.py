from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents.models import Persona, PersonaLanguage, PhoneNumber
from agents.services import persona_duplicate

pytestmark = pytest.mark.django_db


def test_starter_personas_are_installed_with_exactly_one_default():
    slugs = set(Persona.objects.values_list("slug", flat=True))
    assert {"front-desk", "tech-support", "cold-call-practice"} <= slugs
    assert list(Persona.objects.filter(is_default=True).values_list("slug", flat=True)) == ["front-desk"]


def test_starter_personas_are_written_for_the_ear():
    for persona in Persona.objects.filter(slug__in=["front-desk", "tech-support", "cold-call-practice"]):
        spoken = f"{persona.system_prompt} {persona.welcome_greeting}"
        assert not re.search(r"\d", spoken), persona.slug  # numbers in words
        assert not re.search(r"[*#`]|^\s*-\s", spoken, re.M), persona.slug  # no markdown or lists


def test_the_database_refuses_a_second_default(default_persona):
    with pytest.raises(IntegrityError), transaction.atomic():
        Persona.objects.create(name="Two", slug="two", is_default=True, system_prompt="x")


def test_validation_explains_how_to_switch_the_default(default_persona):
    second = Persona(name="Two", slug="two", is_default=True, system_prompt="x")
    with pytest.raises(ValidationError) as excinfo:
        second.full_clean()
    assert "Make default" in str(excinfo.value.message_dict["is_default"])


def test_the_default_cannot_simply_be_unticked(default_persona):
    default_persona.is_default = False
    with pytest.raises(ValidationError) as excinfo:
        default_persona.full_clean()
    assert "must stay the default" in str(excinfo.value.message_dict["is_default"])


def test_make_default_moves_the_flag(default_persona, other_persona):
    Persona.objects.make_default(other_persona)
    assert list(Persona.objects.filter(is_default=True)) == [other_persona]


def test_a_call_to_a_routed_number_reaches_its_persona(default_persona, other_persona):
    PhoneNumber.objects.create(number="+14155550111", persona=other_persona, label="Support line")
    assert Persona.objects.for_number("+14155550111") == other_persona


def test_an_unknown_number_reaches_the_default(default_persona, other_persona):
    PhoneNumber.objects.create(number="+14155550111", persona=other_persona)
    assert Persona.objects.for_number("+14155550999") == default_persona


def test_a_number_routed_to_an_inactive_persona_falls_back_to_the_default(default_persona, other_persona):
    PhoneNumber.objects.create(number="+14155550111", persona=other_persona)
    other_persona.is_active = False
    other_persona.save()
    assert Persona.objects.for_number("+14155550111") == default_persona


def test_phone_numbers_must_be_e164(default_persona):
    with pytest.raises(ValidationError):
        PhoneNumber(number="415-555-0111", persona=default_persona).full_clean()


def test_language_must_be_a_bcp47_tag(default_persona):
    default_persona.language = "english please"
    with pytest.raises(ValidationError):
        default_persona.full_clean()


def test_duplicate_makes_an_inactive_editable_copy(default_persona):
    first = persona_duplicate(persona=default_persona)
    second = persona_duplicate(persona=default_persona)
    assert (first.slug, second.slug) == (f"{default_persona.slug}-copy", f"{default_persona.slug}-copy-2")
    assert first.system_prompt == default_persona.system_prompt
    assert not first.is_default and not first.is_active
    assert Persona.objects.filter(is_default=True).count() == 1


def test_duplicate_copies_the_languages_but_not_the_numbers(default_persona):
    PersonaLanguage.objects.create(persona=default_persona, code="es-MX", voice="es-US-Journey-F")
    PhoneNumber.objects.create(number="+14155550111", persona=default_persona)
    copy = persona_duplicate(persona=default_persona)
    assert list(copy.languages.values_list("code", "voice")) == [("es-MX", "es-US-Journey-F")]
    assert default_persona.languages.count() == 1 and not copy.phone_numbers.exists()


def test_stall_limits_have_phone_sized_defaults(default_persona):
    persona = Persona.objects.create(name="New", slug="new", system_prompt="x")
    assert (persona.first_token_timeout_seconds, persona.token_gap_timeout_seconds) == (8.0, 5.0)


def test_the_database_refuses_a_stall_limit_of_zero(default_persona):
    with pytest.raises(IntegrityError), transaction.atomic():
        Persona.objects.filter(pk=default_persona.pk).update(token_gap_timeout_seconds=0)


def test_transfers_need_a_handoff_number(default_persona):
    default_persona.transfer_enabled = True
    default_persona.handoff_number = ""
    with pytest.raises(ValidationError) as excinfo:
        default_persona.full_clean()
    assert "need a number to dial" in str(excinfo.value.message_dict["handoff_number"])
    default_persona.handoff_number = "+14155550177"
    default_persona.full_clean()


def test_a_handoff_number_must_be_e164(default_persona):
    default_persona.handoff_number = "555 0177"
    with pytest.raises(ValidationError) as excinfo:
        default_persona.full_clean()
    assert "handoff_number" in excinfo.value.message_dict


@pytest.mark.parametrize("code", ["en-US", "en-us"])
def test_a_persona_language_may_not_repeat_its_own_language(default_persona, code):
    assert default_persona.language == "en-US"
    with pytest.raises(ValidationError) as excinfo:
        PersonaLanguage(persona=default_persona, code=code).full_clean()
    assert "own language already" in str(excinfo.value.message_dict["code"])
    PersonaLanguage(persona=default_persona, code="es-MX").full_clean()
