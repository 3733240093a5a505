"""TwiML for connecting a call to ConversationRelay, built with twilio's VoiceResponse."""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

from agents.models import Persona
from calls.models import Call
from calls.signatures import public_url, relay_websocket_url


def connect_relay_twiml(*, call: Call, persona: Persona, greet: bool = True) -> str:
    """`<Connect action><ConversationRelay/></Connect>` for this call and persona.

    `greet=False` is for reconnecting a call whose conversation already started: the history is
    in the database, and the caller should not hear the greeting twice.
    """
    response = VoiceResponse()
    connect = response.connect(action=public_url("/twilio/relay-action/"))
    relay = connect.conversation_relay(
        url=relay_websocket_url(),
        welcome_greeting=(persona.welcome_greeting or None) if greet else None,
        welcome_greeting_interruptible=persona.interruptible,
        language=persona.language,
        voice=persona.voice or None,
        tts_provider=persona.tts_provider,
        transcription_provider=persona.transcription_provider,
        interruptible=persona.interruptible,
    )
    # Identifiers only: customParameters travel to the socket in clear text.
    relay.parameter(name="call_id", value=str(call.pk))
    relay.parameter(name="persona_id", value=str(persona.pk))
    return str(response)


UNAVAILABLE_APOLOGY = "Sorry, nobody can take your call right now. Please try again later. Goodbye."


def unavailable_twiml() -> str:
    """An apology and a hang-up, for a call no persona can answer: better than a 500, which
    callers hear as Twilio's generic "an application error has occurred"."""
    response = VoiceResponse()
    response.say(UNAVAILABLE_APOLOGY)
    response.hangup()
    return str(response)
