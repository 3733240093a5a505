"""`POST /twilio/voice/`: signatures, routing, the stored call and greeting, and the TwiML."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest
from twilio.request_validator import RequestValidator

from agents.models import Persona, PersonaLanguage, PhoneNumber
from calls.models import Call, Turn

pytestmark = pytest.mark.django_db

VOICE = "/twilio/voice/"
CALL_SID = "CA" + "a1" * 16
CALLER = "+15550001111"
OUR_NUMBER = "+15550002222"


def voice_params(**overrides: str) -> dict[str, str]:
    """The form Twilio posts when a call comes in (the fields we read, and some we don't)."""
    return {
        "AccountSid": "AC" + "0f" * 16,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "CallStatus": "ringing",
        "Called": OUR_NUMBER,
        "Caller": CALLER,
        "CallerCountry": "US",
        "Direction": "inbound",
        "From": CALLER,
        "To": OUR_NUMBER,
        **overrides,
    }


def relay_of(response) -> ET.Element:
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    relay = root.find("./Connect/ConversationRelay")
    assert relay is not None, response.content
    return relay


def parameters_of(relay: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in relay.findall("Parameter")}


# --- Signatures -----------------------------------------------------------------------------


def test_a_signed_webhook_is_answered_with_twiml(twilio_post, default_persona):
    response = twilio_post(VOICE, voice_params())
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert Call.objects.filter(call_sid=CALL_SID).exists()


def test_a_bad_signature_is_refused(twilio_post, default_persona):
    response = twilio_post(VOICE, voice_params(), signature="bm90IHRoZSBzaWduYXR1cmU=")
    assert response.status_code == 403
    assert not Call.objects.filter(call_sid=CALL_SID).exists()


def test_a_signature_over_other_params_is_refused(client, twilio_token, default_persona):
    signed_for = RequestValidator(twilio_token).compute_signature(
        f"https://switchboard.example.com{VOICE}", voice_params(From="+15559999999")
    )
    response = client.post(VOICE, voice_params(), headers={"X-Twilio-Signature": signed_for})
    assert response.status_code == 403
    assert not Call.objects.filter(call_sid=CALL_SID).exists()


def test_a_missing_signature_is_refused(client, twilio_token, default_persona):
    response = client.post(VOICE, voice_params())
    assert response.status_code == 403
    assert not Call.objects.filter(call_sid=CALL_SID).exists()


def test_without_a_token_unsigned_webhooks_are_refused_when_debug_is_off(client, settings, default_persona):
    settings.TWILIO_AUTH_TOKEN = ""
    settings.DEBUG = False
    response = client.post(VOICE, voice_params())
    assert response.status_code == 403
    assert not Call.objects.filter(call_sid=CALL_SID).exists()


def test_without_a_token_unsigned_webhooks_are_accepted_when_debug_is_on(
    client, settings, default_persona, caplog
):
    settings.TWILIO_AUTH_TOKEN = ""
    settings.DEBUG = True
    with caplog.at_level(logging.WARNING, logger="calls.webhooks.signatures"):
        response = client.post(VOICE, voice_params())
    assert response.status_code == 200
    assert Call.objects.filter(call_sid=CALL_SID).exists()
    assert "TWILIO_AUTH_TOKEN is unset" in caplog.text


def test_only_post_is_allowed(client, twilio_token):
    assert client.get(VOICE).status_code == 405


def test_a_webhook_without_a_call_sid_is_a_bad_request(twilio_post, default_persona):
    response = twilio_post(VOICE, voice_params(CallSid=""))
    assert response.status_code == 400
    assert not Call.objects.filter(call_sid="").exists()


# --- TwiML ----------------------------------------------------------------------------------


def test_the_twiml_connects_the_call_to_the_relay_with_the_persona_settings(twilio_post, default_persona):
    # Values that differ from every default, so each one proves it came from the persona.
    Persona.objects.filter(pk=default_persona.pk).update(
        welcome_greeting="Buenos días, ¿en qué le puedo ayudar? <pausa> & más",
        language="es-MX",
        voice="es-US-Journey-F",
        tts_provider=Persona.TtsProvider.GOOGLE,
        transcription_provider=Persona.TranscriptionProvider.GOOGLE,
        interruptible=Persona.Interruptible.SPEECH,
    )
    response = twilio_post(VOICE, voice_params())

    root = ET.fromstring(response.content)
    connect = root.find("Connect")
    assert connect.get("action") == "https://switchboard.example.com/twilio/relay-action/"
    relay = relay_of(response)
    assert relay.get("url") == "wss://switchboard.example.com/ws/relay/"
    assert relay.get("welcomeGreeting") == "Buenos días, ¿en qué le puedo ayudar? <pausa> & más"
    assert relay.get("language") == "es-MX"
    assert relay.get("voice") == "es-US-Journey-F"
    assert relay.get("ttsProvider") == "Google"
    assert relay.get("transcriptionProvider") == "Google"
    assert relay.get("interruptible") == "speech"
    call = Call.objects.get(call_sid=CALL_SID)
    assert parameters_of(relay) == {"call_id": str(call.pk), "persona_id": str(default_persona.pk)}


def test_a_persona_without_a_greeting_lets_the_caller_speak_first(twilio_post, default_persona):
    Persona.objects.filter(pk=default_persona.pk).update(welcome_greeting="", voice="")
    relay = relay_of(twilio_post(VOICE, voice_params()))
    assert relay.get("welcomeGreeting") is None
    assert relay.get("voice") is None  # the provider's default voice
    assert not Turn.objects.filter(call__call_sid=CALL_SID).exists()


def test_keypad_input_turns_on_dtmf_detection(twilio_post, default_persona):
    assert relay_of(twilio_post(VOICE, voice_params())).get("dtmfDetection") is None
    default_persona.dtmf_enabled = True
    default_persona.save()  # as the admin saves it: live calls see the change at once
    relay = relay_of(twilio_post(VOICE, voice_params(CallSid="CA" + "b2" * 16)))
    assert relay.get("dtmfDetection") == "true"


def test_the_greeting_interruptible_mode_comes_only_with_a_greeting(twilio_post, default_persona):
    default_persona.interruptible = Persona.Interruptible.DTMF
    default_persona.save()
    relay = relay_of(twilio_post(VOICE, voice_params()))
    assert relay.get("welcomeGreetingInterruptible") == "dtmf"
    default_persona.welcome_greeting = ""
    default_persona.save()
    relay = relay_of(twilio_post(VOICE, voice_params(CallSid="CA" + "b3" * 16)))
    assert "welcomeGreeting" not in relay.attrib
    assert "welcomeGreetingInterruptible" not in relay.attrib
    assert relay.get("interruptible") == "dtmf"


def test_each_language_it_may_switch_to_is_declared_with_its_own_language_first(twilio_post, default_persona):
    Persona.objects.filter(pk=default_persona.pk).update(
        language="en-US",
        voice="en-US-Journey-O",
        tts_provider=Persona.TtsProvider.GOOGLE,
        transcription_provider=Persona.TranscriptionProvider.GOOGLE,
    )
    PersonaLanguage.objects.create(
        persona=default_persona,
        code="es-MX",
        voice="es-US-Journey-F",
        tts_provider=Persona.TtsProvider.GOOGLE,
        transcription_provider=Persona.TranscriptionProvider.DEEPGRAM,
        speech_model="nova-3-general",
    )
    PersonaLanguage.objects.create(persona=default_persona, code="fr-FR")  # inherits everything
    relay = relay_of(twilio_post(VOICE, voice_params()))

    languages = [dict(element.attrib) for element in relay.findall("Language")]
    assert languages == [
        {
            "code": "en-US",
            "voice": "en-US-Journey-O",
            "ttsProvider": "Google",
            "transcriptionProvider": "Google",
        },
        {
            "code": "es-MX",
            "voice": "es-US-Journey-F",
            "ttsProvider": "Google",
            "transcriptionProvider": "Deepgram",
            "speechModel": "nova-3-general",
        },
        {"code": "fr-FR"},
    ]
    assert relay.get("language") == "en-US"  # declaring languages activates none of them
    call = Call.objects.get(call_sid=CALL_SID)
    assert parameters_of(relay) == {"call_id": str(call.pk), "persona_id": str(default_persona.pk)}


def test_a_persona_without_other_languages_declares_none(twilio_post, default_persona):
    # Only a bulk create can add its own language (PersonaLanguage.clean refuses it): still none.
    PersonaLanguage.objects.create(persona=default_persona, code=default_persona.language)
    relay = relay_of(twilio_post(VOICE, voice_params()))
    assert relay.findall("Language") == []


def test_no_persona_to_answer_gets_an_apology_and_a_hang_up(twilio_post, default_persona, caplog):
    Persona.objects.update(is_default=False)
    with caplog.at_level(logging.ERROR, logger="calls.views"):
        response = twilio_post(VOICE, voice_params())
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "Sorry" in root.find("Say").text
    assert not Call.objects.filter(call_sid=CALL_SID).exists()
    assert CALL_SID in caplog.text and "refused" in caplog.text


def test_an_inactive_default_persona_does_not_answer(twilio_post, default_persona):
    # Only a bulk update can do this (Persona.clean forbids it), but the webhook must not 500.
    Persona.objects.filter(pk=default_persona.pk).update(is_active=False)
    root = ET.fromstring(twilio_post(VOICE, voice_params()).content)
    assert root.find("Hangup") is not None and root.find("Connect") is None
    assert not Call.objects.filter(call_sid=CALL_SID).exists()


# --- Routing --------------------------------------------------------------------------------


def test_a_routed_number_reaches_its_persona(twilio_post, default_persona, other_persona):
    PhoneNumber.objects.create(number=OUR_NUMBER, persona=other_persona)
    relay = relay_of(twilio_post(VOICE, voice_params()))
    call = Call.objects.get(call_sid=CALL_SID)
    assert call.persona == other_persona
    assert relay.get("welcomeGreeting") == "Support here."
    assert parameters_of(relay)["persona_id"] == str(other_persona.pk)


def test_an_unknown_number_reaches_the_default_persona(twilio_post, default_persona, other_persona):
    PhoneNumber.objects.create(number="+15550003333", persona=other_persona)
    relay = relay_of(twilio_post(VOICE, voice_params()))
    assert Call.objects.get(call_sid=CALL_SID).persona == default_persona
    assert parameters_of(relay)["persona_id"] == str(default_persona.pk)


def test_a_number_routed_to_an_inactive_persona_reaches_the_default(
    twilio_post, default_persona, other_persona
):
    PhoneNumber.objects.create(number=OUR_NUMBER, persona=other_persona)
    Persona.objects.filter(pk=other_persona.pk).update(is_active=False)
    twilio_post(VOICE, voice_params())
    assert Call.objects.get(call_sid=CALL_SID).persona == default_persona


# --- The stored call ------------------------------------------------------------------------


def test_the_call_is_stored_ringing_with_its_numbers(twilio_post, default_persona):
    twilio_post(VOICE, voice_params())
    call = Call.objects.get(call_sid=CALL_SID)
    assert (call.from_number, call.to_number) == (CALLER, OUR_NUMBER)
    assert call.direction == Call.Direction.INBOUND
    assert call.status == Call.Status.RINGING
    assert call.started_at is not None and call.ended_at is None


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("outbound-api", Call.Direction.OUTBOUND_API),
        ("outbound-dial", Call.Direction.OUTBOUND_DIAL),
        ("trunking-originating", Call.Direction.INBOUND),
        ("", Call.Direction.INBOUND),
    ],
)
def test_the_direction_is_twilios_or_inbound(twilio_post, default_persona, sent, stored):
    twilio_post(VOICE, voice_params(Direction=sent))
    assert Call.objects.get(call_sid=CALL_SID).direction == stored


def test_a_long_sip_caller_is_shortened_rather_than_failing(twilio_post, default_persona):
    sip = "sip:" + "someone.with.a.long.name" * 3 + "@pbx.example.com"
    assert twilio_post(VOICE, voice_params(From=sip)).status_code == 200
    assert Call.objects.get(call_sid=CALL_SID).from_number == sip[:32]


def test_the_greeting_is_the_first_agent_turn(twilio_post, default_persona):
    twilio_post(VOICE, voice_params())
    turn = Turn.objects.get(call__call_sid=CALL_SID)
    assert turn.sequence == 0
    assert turn.role == Turn.Role.ASSISTANT
    assert turn.text == turn.generated_text == default_persona.welcome_greeting != ""
    assert not turn.interrupted


def test_a_retried_webhook_keeps_one_call_and_one_greeting(twilio_post, default_persona):
    first = relay_of(twilio_post(VOICE, voice_params()))
    started_at = Call.objects.get(call_sid=CALL_SID).started_at
    second = relay_of(twilio_post(VOICE, voice_params()))

    assert Call.objects.filter(call_sid=CALL_SID).count() == 1
    call = Call.objects.get(call_sid=CALL_SID)
    assert list(call.turns.values_list("sequence", "role", "text")) == [
        (0, Turn.Role.ASSISTANT, default_persona.welcome_greeting)
    ]
    assert call.started_at == started_at
    # The retry answers the same call: Twilio only retries when it never got the first answer.
    expected = {"call_id": str(call.pk), "persona_id": str(default_persona.pk)}
    assert parameters_of(first) == parameters_of(second) == expected
    assert second.get("welcomeGreeting") == default_persona.welcome_greeting


def test_a_retry_keeps_the_persona_the_call_started_with(twilio_post, default_persona, other_persona):
    twilio_post(VOICE, voice_params())
    PhoneNumber.objects.create(number=OUR_NUMBER, persona=other_persona)
    relay = relay_of(twilio_post(VOICE, voice_params()))
    call = Call.objects.get(call_sid=CALL_SID)
    assert call.persona == default_persona
    assert parameters_of(relay)["persona_id"] == str(default_persona.pk)
    assert call.turns.get().text == default_persona.welcome_greeting


def test_a_retry_does_not_move_a_call_already_in_progress_back(twilio_post, default_persona):
    twilio_post(VOICE, voice_params())
    Call.objects.filter(call_sid=CALL_SID).update(status=Call.Status.IN_PROGRESS)
    twilio_post(VOICE, voice_params())
    assert Call.objects.get(call_sid=CALL_SID).status == Call.Status.IN_PROGRESS
