from __future__ import annotations

import re

import pytest
from django.urls import reverse

from agents.models import Persona, PersonaLanguage, PhoneNumber

pytestmark = pytest.mark.django_db


PERSONA_FORM_FIELDS = [
    "name",
    "slug",
    "transport",
    "stt_provider",
    "stt_model",
    "stt_base_url",
    "stt_api_key_env",
    "stream_tts_provider",
    "stream_tts_model",
    "stream_voice",
    "stream_tts_base_url",
    "stream_tts_api_key_env",
    "vad_start_threshold",
    "vad_end_threshold",
    "vad_min_speech_ms",
    "vad_silence_ms",
    "vad_barge_in_threshold",
    "vad_barge_in_windows",
    "system_prompt",
    "welcome_greeting",
    "fallback_line",
    "first_token_timeout_seconds",
    "token_gap_timeout_seconds",
    "language",
    "voice",
    "tts_provider",
    "transcription_provider",
    "interruptible",
    "speech_chunking",
    "end_call_marker",
    "handoff_number",
    "dtmf_pause_seconds",
    "idle_timeout_seconds",
    "idle_max_reprompts",
    "idle_reprompt_line",
    "idle_goodbye_line",
    "max_call_seconds",
    "max_call_line",
    "tool_filler_line",
    "tool_filler_after_seconds",
    "llm_provider",
    "llm_model",
    "temperature",
    "max_tokens",
    "summary_prompt",
]
PERSONA_FORM_CHECKBOXES = [
    "is_active",
    "is_default",
    "allow_ssml",
    "end_call_enabled",
    "transfer_enabled",
    "dtmf_enabled",
]


def management_form(prefix: str, total: int = 0, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def persona_form(persona: Persona, **changes) -> dict:
    """The persona's change form as a browser posts it unchanged, then `changes`: empty fields
    are sent empty, unticked boxes (a value of "") not at all."""
    data = {
        field: "" if (value := getattr(persona, field)) is None else value for field in PERSONA_FORM_FIELDS
    }
    data.update({box: "on" if getattr(persona, box) else "" for box in PERSONA_FORM_CHECKBOXES})
    data.update(
        management_form("languages") | management_form("phone_numbers") | management_form("http_tools")
    )
    data.update(changes)
    return {k: v for k, v in data.items() if not (k in PERSONA_FORM_CHECKBOXES and v == "")}


def test_a_persona_page_groups_its_settings(admin_client, default_persona):
    html = admin_client.get(
        reverse("admin:agents_persona_change", args=[default_persona.pk])
    ).content.decode()
    for heading in [
        "What it says",
        "When the model stalls",
        "Voice and speech",
        "Speech providers and turn detection (Media Streams)",
        "Call control",
        "Silence and time limits",
        "Model",
        "After the call",
    ]:
        assert f">{heading}<" in html
    inline = re.search(r'<h2 id="languages-heading"[^>]*>(.*?)</h2>', html, re.S)
    assert inline and inline.group(1).strip() == "Other languages it may switch to"
    assert 'name="system_prompt" cols="100" rows="18"' in html


def test_staff_edit_a_persona_prompt(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    response = admin_client.post(url, persona_form(default_persona, system_prompt="Be brief and kind."))
    assert response.status_code == 302, response.content.decode()[:2000]
    default_persona.refresh_from_db()
    assert default_persona.system_prompt == "Be brief and kind."


def test_staff_set_the_stall_limits_and_nonsense_is_refused(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    limits = {"first_token_timeout_seconds": "12", "token_gap_timeout_seconds": "2.5"}
    response = admin_client.post(url, persona_form(default_persona, **limits))
    assert response.status_code == 302, response.content.decode()[:2000]
    persona = Persona.objects.get(pk=default_persona.pk)
    assert (persona.first_token_timeout_seconds, persona.token_gap_timeout_seconds) == (12, 2.5)

    response = admin_client.post(url, persona_form(default_persona, token_gap_timeout_seconds="0"))
    assert response.status_code == 200  # the form again, with the error
    assert "greater than or equal to 0.5" in response.content.decode()
    default_persona.refresh_from_db()
    assert default_persona.token_gap_timeout_seconds == 2.5


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


def test_staff_edit_the_call_control_settings_and_add_a_language(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    settings = {
        "speech_chunking": Persona.Chunking.PHRASE,
        "allow_ssml": "on",
        "end_call_enabled": "",
        "end_call_marker": "[END_CALL]",
        "transfer_enabled": "on",
        "handoff_number": "+14155550177",
        "dtmf_enabled": "on",
        "dtmf_pause_seconds": "2.5",
        "idle_timeout_seconds": "",
        "idle_max_reprompts": "3",
        "idle_reprompt_line": "Hello? Still with me?",
        "idle_goodbye_line": "I'll let you go. Bye.",
        "max_call_seconds": "600",
        "max_call_line": "Time's up, goodbye.",
    }
    language = {
        "languages-0-code": "es-MX",
        "languages-0-voice": "es-US-Journey-F",
        "languages-0-tts_provider": "Google",
        "languages-0-transcription_provider": "Deepgram",
        "languages-0-speech_model": "nova-3-general",
    }
    form = persona_form(default_persona, **settings) | management_form("languages", total=1) | language
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]

    persona = Persona.objects.get(pk=default_persona.pk)
    assert persona.speech_chunking == Persona.Chunking.PHRASE and persona.allow_ssml
    assert not persona.end_call_enabled and persona.end_call_marker == "[END_CALL]"
    assert persona.transfer_enabled and persona.handoff_number == "+14155550177"
    assert persona.dtmf_enabled and persona.dtmf_pause_seconds == 2.5
    assert persona.idle_timeout_seconds is None and persona.idle_max_reprompts == 3
    assert (persona.idle_reprompt_line, persona.idle_goodbye_line) == (
        "Hello? Still with me?",
        "I'll let you go. Bye.",
    )
    assert (persona.max_call_seconds, persona.max_call_line) == (600, "Time's up, goodbye.")
    assert list(
        persona.languages.values_list(
            "code", "voice", "tts_provider", "transcription_provider", "speech_model"
        )
    ) == [("es-MX", "es-US-Journey-F", "Google", "Deepgram", "nova-3-general")]
    # The page shows what was saved.
    html = admin_client.get(url).content.decode()
    assert 'value="+14155550177"' in html and 'value="es-MX"' in html


def test_transfers_without_a_number_are_refused_with_a_clear_message(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    response = admin_client.post(url, persona_form(default_persona, transfer_enabled="on", handoff_number=""))
    assert response.status_code == 200
    assert "Transfers need a number to dial" in response.content.decode()
    assert not Persona.objects.get(pk=default_persona.pk).transfer_enabled


def test_the_personas_own_language_is_refused_as_another_language(admin_client, default_persona):
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    form = persona_form(default_persona) | management_form("languages", total=1)
    response = admin_client.post(url, form | {"languages-0-code": default_persona.language})
    assert response.status_code == 200
    assert "is the persona&#x27;s own language already" in response.content.decode()
    assert not default_persona.languages.exists()


def test_switching_the_own_language_to_a_listed_one_is_refused(admin_client, default_persona):
    listed = PersonaLanguage.objects.create(persona=default_persona, code="es-MX")
    url = reverse("admin:agents_persona_change", args=[default_persona.pk])
    form = persona_form(default_persona, language="es-MX") | management_form("languages", total=1, initial=1)
    response = admin_client.post(
        url,
        form
        | {
            "languages-0-id": str(listed.pk),
            "languages-0-persona": str(default_persona.pk),
            "languages-0-code": "es-MX",
        },
    )
    assert response.status_code == 200
    assert "own language already" in response.content.decode()
    assert Persona.objects.get(pk=default_persona.pk).language == "en-US"
