"""The call simulator: its TwiML and signing helpers against the real webhook and handshake
checks, and its relay client against a scripted stand-in for the app's socket."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from io import StringIO
from typing import Any

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from agents.models import Persona
from calls.models import Call, Turn
from calls.simulator.relay import (
    PhoneCall,
    RelayCaller,
    SimulatorError,
    iterate,
    parse_relay_twiml,
    post_voice_webhook,
    simulate_call,
    twilio_signature,
)
from calls.webhooks.signatures import handshake_signature_is_valid, relay_websocket_url
from calls.webhooks.twiml import connect_relay_twiml, unavailable_twiml

GREETING = "Hello, this is Maya."

# --- TwiML and signatures -------------------------------------------------------------------


def test_the_relay_twiml_is_read_as_twilio_reads_it(twilio_token, db):  # reads the persona's languages
    persona = Persona(pk=3, name="Maya", welcome_greeting='Hi & "welcome" <there>')
    twiml = connect_relay_twiml(call=Call(pk=7), persona=persona, switchable=())
    relay = parse_relay_twiml(twiml)
    assert relay.url == "wss://switchboard.example.com/ws/relay/"
    assert relay.welcome_greeting == 'Hi & "welcome" <there>'
    assert relay.parameters == {"call_id": "7", "persona_id": "3"}


def test_twiml_without_a_relay_is_an_error_that_says_what_was_said():
    with pytest.raises(SimulatorError, match="Sorry, nobody can take your call"):
        parse_relay_twiml(unavailable_twiml())


def test_an_answer_that_is_not_xml_is_an_error():
    with pytest.raises(SimulatorError, match="did not answer TwiML"):
        parse_relay_twiml("<html><body>Server Error (500)")


def test_the_socket_signature_passes_the_servers_handshake_check(twilio_token):
    def scope(signature: str) -> dict[str, Any]:
        return {
            "path": "/ws/relay/",
            "headers": [(b"x-twilio-signature", signature.encode())],
            "query_string": b"",
        }

    assert handshake_signature_is_valid(scope(twilio_signature(twilio_token, relay_websocket_url())))
    assert not handshake_signature_is_valid(scope(twilio_signature("another-token", relay_websocket_url())))


def test_a_call_has_twilio_shaped_identifiers_in_its_webhook_and_setup():
    call = PhoneCall(from_number="+15550001111", to_number="+15550002222")
    for sid, prefix in [(call.call_sid, "CA"), (call.account_sid, "AC"), (call.session_id, "VX")]:
        assert re.fullmatch(prefix + "[0-9a-f]{32}", sid)
    assert PhoneCall(from_number="", to_number="").call_sid != call.call_sid

    params = call.voice_webhook_params()
    assert params["CallSid"] == call.call_sid and params["AccountSid"] == call.account_sid
    assert (params["From"], params["To"], params["Direction"], params["CallStatus"]) == (
        "+15550001111",
        "+15550002222",
        "inbound",
        "ringing",
    )
    setup = call.setup_message({"call_id": "7"})
    assert setup["type"] == "setup" and setup["callSid"] == call.call_sid
    assert setup["sessionId"] == call.session_id and setup["accountSid"] == call.account_sid
    assert (setup["from"], setup["to"]) == ("+15550001111", "+15550002222")
    assert setup["customParameters"] == {"call_id": "7"}
    assert setup["callStatus"] == "RINGING" and setup["parentCallSid"] == ""


# --- The voice webhook, against the real view -----------------------------------------------


def test_the_voice_webhook_is_signed_as_the_server_checks_it(live_server, twilio_token, default_persona):
    call = PhoneCall(from_number="+15550001111", to_number="+15550002222")
    twiml = post_voice_webhook(
        call, base_url=live_server.url, public_base_url="https://switchboard.example.com", token=twilio_token
    )
    relay = parse_relay_twiml(twiml)
    stored = Call.objects.get(call_sid=call.call_sid)
    assert relay.parameters == {"call_id": str(stored.pk), "persona_id": str(default_persona.pk)}
    assert relay.welcome_greeting == default_persona.welcome_greeting
    assert (stored.from_number, stored.to_number) == ("+15550001111", "+15550002222")


def test_a_refused_webhook_says_what_to_check(live_server, twilio_token, default_persona):
    call = PhoneCall(from_number="+15550001111", to_number="+15550002222")
    with pytest.raises(SimulatorError, match=r"HTTP 403 .*TWILIO_AUTH_TOKEN"):
        post_voice_webhook(call, base_url=live_server.url, public_base_url="https://x.test", token="wrong")
    assert not Call.objects.filter(call_sid=call.call_sid).exists()


# --- The relay client, against a scripted stand-in --------------------------------------------

Answer = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


class FakeRelay:
    """Stands in for the app's socket: records every frame and answers prompts with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.frames: list[dict[str, Any]] = []
        self.headers: dict[str, str] = {}
        self.finished = asyncio.Event()
        self.url = ""

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set by the handshake
        self.headers = dict(ws.request.headers)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame["type"] == "prompt":
                    await self.answer(ws, frame)
        finally:
            self.finished.set()

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] == kind]


@asynccontextmanager
async def fake_relay(answer: Answer) -> AsyncIterator[FakeRelay]:
    relay = FakeRelay(answer)
    async with serve(relay.handle, "127.0.0.1", 0) as server:
        relay.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/relay/"
        yield relay


def tokens(*parts: str, last: bool = True) -> list[str]:
    frames = [{"type": "text", "token": part, "last": False} for part in parts]
    frames[-1]["last"] = last
    return [json.dumps(frame) for frame in frames]


async def echo(ws: ServerConnection, prompt: dict[str, Any]) -> None:
    for frame in tokens("You", " said", f" {prompt['voicePrompt']}."):
        await ws.send(frame)


async def act_out(relay: FakeRelay, script: list[str]) -> str:
    """Call the fake relay with a script; the transcript once the fake has seen the hang-up."""
    out = StringIO()
    call = PhoneCall(from_number="+15550001111", to_number="+15550002222")
    async with connect(relay.url) as ws:
        caller = RelayCaller(ws, out=out, greeting=GREETING, reply_timeout=10)
        await caller.run(call.setup_message({"call_id": "1"}), iterate(script), scripted=True)
    async with asyncio.timeout(10):
        await relay.finished.wait()
    return out.getvalue()


async def test_a_scripted_caller_waits_for_each_whole_reply():
    async with fake_relay(echo) as relay:
        transcript = await act_out(relay, ["# a comment", "hello there", "", "/dtmf 4#", "goodbye"])

    assert [frame["type"] for frame in relay.frames] == ["setup", "prompt", "dtmf", "dtmf", "prompt"]
    assert relay.frames[1] == {"type": "prompt", "voicePrompt": "hello there", "lang": "en-US", "last": True}
    assert [frame["digit"] for frame in relay.sent("dtmf")] == ["4", "#"]
    assert transcript.splitlines() == [
        f"agent: {GREETING}",
        "caller: hello there",
        "agent: You said hello there.",
        "caller: goodbye",
        "agent: You said goodbye.",
        "[caller hangs up]",
    ]


async def test_interrupt_after_n_tokens_reports_what_was_heard_and_goes_on():
    async def story(ws: ServerConnection, prompt: dict[str, Any]) -> None:
        if prompt["voicePrompt"] == "stop":
            for frame in tokens("Okay."):
                await ws.send(frame)
        else:  # no last:true: the story goes on until the caller cuts in
            for frame in tokens("Once", " upon", last=False):
                await ws.send(frame)

    async with fake_relay(story) as relay:
        transcript = await act_out(relay, ["/interrupt after 2", "tell me a story", "stop"])

    assert [frame["type"] for frame in relay.frames] == ["setup", "prompt", "interrupt", "prompt"]
    interrupt = relay.sent("interrupt")[0]
    assert interrupt["utteranceUntilInterrupt"] == "Once upon"
    assert (
        isinstance(interrupt["durationUntilInterruptMs"], int) and interrupt["durationUntilInterruptMs"] >= 0
    )
    # The script went on at the interrupt, without waiting for a last:true that never came.
    assert transcript.splitlines()[2:5] == ["agent: Once upon [interrupted]", "caller: stop", "agent: Okay."]
    assert "no last:true" not in transcript


async def test_tokens_sent_after_the_interrupt_are_shown_as_unheard():
    async def story(ws: ServerConnection, prompt: dict[str, Any]) -> None:
        # All four leave before the interrupt can arrive (websockets writes small frames at once).
        for frame in tokens("Once", " upon", " a", " time", last=False):
            await ws.send(frame)

    async with fake_relay(story) as relay:
        transcript = await act_out(relay, ["/interrupt after 2", "tell me a story"])

    assert relay.sent("interrupt")[0]["utteranceUntilInterrupt"] == "Once upon"
    assert "agent: Once upon [interrupted]" in transcript.splitlines()
    assert "agent, after the interrupt:  a time" in transcript


async def test_interrupting_before_any_reply_cuts_off_the_greeting():
    async with fake_relay(echo) as relay:
        await act_out(relay, ["/interrupt"])
    assert relay.sent("interrupt")[0]["utteranceUntilInterrupt"] == GREETING


async def test_a_reply_shorter_than_the_interrupt_point_is_not_interrupted():
    async with fake_relay(echo) as relay:
        transcript = await act_out(relay, ["/interrupt after 10", "hi", "again"])
    assert not relay.sent("interrupt")
    assert "[the reply ended after 3 tokens; no interrupt sent]" in transcript
    assert len(relay.sent("prompt")) == 2


async def test_an_end_frame_ends_the_session_and_the_script():
    async def hand_off(ws: ServerConnection, prompt: dict[str, Any]) -> None:
        for frame in tokens("Transferring you now."):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "end", "handoffData": '{"reason": "human"}'}))

    async with fake_relay(hand_off) as relay:
        transcript = await act_out(relay, ["a human please", "hello?", "anyone?"])

    assert [frame["voicePrompt"] for frame in relay.sent("prompt")] == ["a human please"]
    assert '[end] {"handoffData": "{\\"reason\\": \\"human\\"}"}' in transcript
    assert "[Twilio ends the session]" in transcript


async def test_the_server_closing_the_socket_ends_the_call():
    async def hang_up(ws: ServerConnection, prompt: dict[str, Any]) -> None:
        await ws.close(1011, "boom")

    async with fake_relay(hang_up) as relay:
        transcript = await act_out(relay, ["hello", "still there?"])

    assert len(relay.sent("prompt")) == 1
    assert "[the server closed the socket: 1011 boom]" in transcript
    assert "[caller hangs up]" not in transcript


async def test_frames_twilio_would_reject_are_flagged():
    async def sloppy(ws: ServerConnection, prompt: dict[str, Any]) -> None:
        await ws.send(json.dumps({"type": "text", "last": True}))
        await ws.send("not json")
        await ws.send(json.dumps({"type": "language", "ttsLanguage": "es-MX"}))
        await ws.send(tokens("ok")[0])

    async with fake_relay(sloppy) as relay:
        transcript = await act_out(relay, ["hi"])
    assert "[invalid text frame; Twilio rejects it with error 64107]" in transcript
    assert "[not a JSON object; Twilio would count it as malformed] 'not json'" in transcript
    assert '[language] {"ttsLanguage": "es-MX"}' in transcript
    assert "agent: ok" in transcript and relay.frames


# --- A whole call: the real webhook, then a stand-in socket ----------------------------------


async def test_a_whole_call_signs_the_socket_and_passes_the_twimls_parameters(
    live_server, twilio_token, default_persona
):
    out = StringIO()
    async with fake_relay(echo) as relay:
        call = await simulate_call(
            base_url=live_server.url,
            public_base_url="https://switchboard.example.com",
            token=twilio_token,
            from_number="+15550001111",
            to_number="+15550002222",
            relay_url=relay.url,
            lines=iterate(["hello"]),
            scripted=True,
            out=out,
            reply_timeout=10,
        )
        async with asyncio.timeout(10):
            await relay.finished.wait()

    stored = await Call.objects.aget(call_sid=call.call_sid)
    # Signed over the TwiML's public wss URL, not the local one dialled.
    validator = RequestValidator(twilio_token)
    assert validator.validate(
        "wss://switchboard.example.com/ws/relay/", {}, relay.headers["x-twilio-signature"]
    )
    setup = relay.frames[0]
    assert setup["callSid"] == call.call_sid
    assert setup["customParameters"] == {"call_id": str(stored.pk), "persona_id": str(default_persona.pk)}
    greeting = await Turn.objects.filter(call=stored).aget()
    lines = out.getvalue().splitlines()
    assert lines[1] == f"agent: {greeting.text}"
    assert "agent: You said hello." in lines
