"""TwiML for connecting a call to ConversationRelay or Media Streams, built with twilio's VoiceResponse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twilio.twiml.voice_response import ConversationRelay, VoiceResponse

from agents.models import Persona, PersonaLanguage
from calls.models import Call
from calls.webhooks.signatures import media_websocket_url, public_url, relay_websocket_url


def connect_relay_twiml(
    *,
    call: Call,
    persona: Persona,
    switchable: Sequence[PersonaLanguage],
    greet: bool = True,
) -> str:
    """`<Connect action><ConversationRelay/></Connect>` for this call and persona.

    `greet=False` is for reconnecting a call whose conversation already started: the history is
    in the database, and the caller should not hear the greeting twice. `switchable` is the
    persona's other languages (agents.directory holds them).
    """
    greeting = (persona.welcome_greeting or None) if greet else None
    response = VoiceResponse()
    connect = response.connect(action=public_url("/twilio/relay-action/"))
    relay = connect.conversation_relay(
        url=relay_websocket_url(),
        welcome_greeting=greeting,
        # Only meaningful with a greeting; without one Twilio would be told about nothing.
        welcome_greeting_interruptible=persona.interruptible if greeting else None,
        language=persona.language,
        voice=persona.voice or None,
        tts_provider=persona.tts_provider,
        transcription_provider=persona.transcription_provider,
        interruptible=persona.interruptible,
        dtmf_detection=True if persona.dtmf_enabled else None,
    )
    add_languages(relay, persona, switchable)
    # Identifiers only: customParameters travel to the socket in clear text.
    relay.parameter(name="call_id", value=str(call.pk or ""))  # none yet while the database is away
    relay.parameter(name="persona_id", value=str(persona.pk))
    if not greet:  # a conversation going on: its socket cannot start without the stored history
        relay.parameter(name="resumed", value="1")
    return str(response)


def connect_stream_twiml(*, call: Call, persona: Persona) -> str:
    """`<Connect action><Stream/></Connect>`: Twilio streams the caller's raw audio to our socket
    and plays what we send back. The greeting is spoken by our own voice once the stream starts,
    so it is not in the TwiML. The stream URL takes no query string: what the socket needs
    travels as `<Parameter>`s, in the `start` event."""
    response = VoiceResponse()
    connect = response.connect(action=public_url("/twilio/stream-action/"))
    stream = connect.stream(url=media_websocket_url())
    # Identifiers only: customParameters travel in clear text. The socket serves only the call
    # that `call_id` names (calls/media/session.py: _call_is_ours).
    stream.parameter(name="call_id", value=str(call.pk or ""))  # none yet while the database is away
    stream.parameter(name="persona_id", value=str(persona.pk))
    return str(response)


def add_languages(relay: ConversationRelay, persona: Persona, switchable: Iterable[PersonaLanguage]) -> None:
    """One `<Language>` per language the persona may switch to, and one for its own language.

    A `language` message switches to the voice of the matching `<Language>` (else the provider's
    default voice for it), so the primary language needs its element too, or switching back
    would lose the persona's voice. Without other languages there is nothing to switch to.
    """
    own = persona.language.lower()
    others = [lang for lang in switchable if lang.code.lower() != own]
    if not others:
        return
    relay.language(
        code=persona.language,
        voice=persona.voice or None,
        tts_provider=persona.tts_provider,
        transcription_provider=persona.transcription_provider,
    )
    for lang in others:
        relay.language(
            code=lang.code,
            voice=lang.voice or None,
            tts_provider=lang.tts_provider or None,
            transcription_provider=lang.transcription_provider or None,
            speech_model=lang.speech_model or None,
        )


UNAVAILABLE_APOLOGY = "Sorry, nobody can take your call right now. Please try again later. Goodbye."


def say_and_hang_up(text: str | None = None) -> str:
    """`<Say>` (when there is something to say) then `<Hangup/>`."""
    response = VoiceResponse()
    if text:
        response.say(text)
    response.hangup()
    return str(response)


def unavailable_twiml() -> str:
    """An apology and a hang-up, for a call no persona can answer: better than a 500, which
    callers hear as Twilio's generic "an application error has occurred"."""
    return say_and_hang_up(UNAVAILABLE_APOLOGY)
