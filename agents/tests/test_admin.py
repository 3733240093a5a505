from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Persona, PhoneNumber

pytestmark = pytest.mark.django_db


def persona_form(persona: Persona, **changes) -> dict:
    data = {
        field: getattr(persona, field)
        for field in [
            "name",
            "slug",
            "system_prompt",
            "welcome_greeting",
            "fallback_line",
            "language",
            "voice",
            "tts_provider",
            "transcription_provider",
            "interruptible",
            "llm_provider",
            "llm_model",
            "temperature",
            "max_tokens",
            "summary_prompt",
        ]
    }
    data.update(is_active="on" if persona.is_active else "", is_default="on" if persona.is_default else "")
    data.update(
        {
            "phone_numbers-TOTAL_FORMS": "0",
            "phone_numbers-INITIAL_FORMS": "0",
            "phone_numbers-MIN_NUM_FORMS": "0",
            "phone_numbers-MAX_NUM_FORMS": "1000",
        }
    )
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_a_persona_page_groups_its_settings(admin_client, default_persona):
    html = admin_client.get(
        reverse("admin:agents_persona_change", args=[default_persona.pk])
    ).content.decode()
    for heading in ["What it says", "Voice and speech", "Model", "After the call"]:
        assert f">{heading}<" in html
    assert 'name="system_prompt" cols="100" rows="18"' in html


def test_staff_edit_a_persona_prompt(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    response = admin_client.post(url, persona_form(default_persona, system_prompt="Be brief and kind."))
    assert response.status_code == 302, response.content.decode()[:2000]
    default_persona.refresh_from_db()
    assert default_persona.system_prompt == "Be brief and kind."


def test_ticking_default_on_a_second_persona_is_refused_with_a_clear_message(
    admin_client, default_persona, other_persona
):
    url = reverse("admin:agents_persona_change", args=[other_persona.pk])
    response = admin_client.post(url, persona_form(other_persona, is_default="on"))
    assert response.status_code == 200
    assert "Make default" in response.content.decode()
    assert Persona.objects.get(is_default=True) == default_persona


def test_the_make_default_action_switches_the_default(admin_client, default_persona, other_persona):
    admin_client.post(
        reverse("admin:agents_persona_changelist"),
        {"action": "make_default", "_selected_action": [other_persona.pk]},
    )
    assert Persona.objects.get(is_default=True) == other_persona


def test_the_duplicate_action_copies_personas(admin_client, default_persona):
    admin_client.post(
        reverse("admin:agents_persona_changelist"),
        {"action": "duplicate", "_selected_action": [default_persona.pk]},
    )
    copy = Persona.objects.get(slug=f"{default_persona.slug}-copy")
    assert copy.system_prompt == default_persona.system_prompt and not copy.is_default


def test_the_persona_list_shows_active_and_default(admin_client, default_persona):
    html = admin_client.get(reverse("admin:agents_persona_changelist")).content.decode()
    assert "field-is_default" in html and "field-is_active" in html and default_persona.name in html


def test_phone_numbers_are_listed_with_their_persona_and_editable(admin_client, other_persona):
    number = PhoneNumber.objects.create(number="+14155550111", persona=other_persona, label="Support")
    html = admin_client.get(reverse("admin:agents_phonenumber_changelist")).content.decode()
    assert "+14155550111" in html and other_persona.name in html
    response = admin_client.post(
        reverse("admin:agents_phonenumber_change", args=[number.pk]),
        {"number": "+14155550112", "persona": other_persona.pk, "label": "Support line"},
    )
    assert response.status_code == 302
    number.refresh_from_db()
    assert (number.number, number.label) == ("+14155550112", "Support line")
