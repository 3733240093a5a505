"""Media Streams calls when something goes wrong: a speech provider fails mid-call, the caller
talks while the model is still thinking, keys instead of words, frames out of order or unknown,
and the agent hanging up itself. The real ASGI app and Postgres, real speech through Silero VAD,
the real provider clients against the fake servers; the test plays Twilio."""

from __future__ import annotations

import base64
import logging
import re
from xml.etree import ElementTree

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from calls.media.clips import clip
from calls.models import Call
from calls.tests.media.conftest import CALL_SID, GREETING, STREAM_SID, MediaClient, turns
from fakes.base import FakeReply
from fakes.realtime_stt_server import SttTurn

pytestmark = [pytest.mark.django_db(transaction=True)]


async def stored_call() -> Call:
    return await Call.objects.aget(call_sid=CALL_SID)


def errors_from(call: Call, source: str) -> list[dict]:
    return [e for e in call.metadata.get("errors", []) if e.get("source") == source]


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the app logged at ERROR or above (a failed event, task or frame)."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("calls", "agents"))
    ]


async def test_text_to_speech_failing_mid_phrase_hands_the_phrase_to_the_offline_voice(
    media, fake_stt, fake_tts, fake_anthropic
):
    reply = "We open at nine."  # one phrase
    fake_stt.reply_with("When do you open?")
    fake_anthropic.queue(FakeReply(tokens=["We open", " at nine."]))
    await media.play(fake_tts, GREETING)
    fake_tts.fail_next("error", after_chunks=1)  # 100 ms of the phrase, then the provider fails

    await media.say(clip("hello"), silence_ms=800)
    before = len(media.received)
    mark = await media.next_event("mark")

    # The provider began the phrase and failed; the offline voice said the phrase in full.
    assert fake_tts.texts[media.spoken :] == [reply]
    failed = fake_tts.syntheses[-1]
    assert failed.chunks_sent == 1 and not failed.completed
    audio = b"".join(
        base64.b64decode(f["media"]["payload"]) for f in media.received[before:] if f["event"] == "media"
    )
    # 100 ms (5 frames) came from the provider; the rest, the whole phrase, from the offline voice.
    assert len(audio) % 160 == 0 and len(audio) // 160 > 5 + 10, len(audio)
    assert media.received[-1] == mark and mark["streamSid"] == STREAM_SID
    await media.echo(mark)
    assert len(fake_tts.syntheses) == media.spoken + 1  # the provider is not asked again
    await media.hang_up()

    stored = await turns()
    assert [(t.role, t.text, t.interrupted) for t in stored] == [
        ("assistant", GREETING, False),
        ("user", "When do you open?", False),
        ("assistant", reply, False),
    ]
    [error] = errors_from(await stored_call(), "tts")
    assert "fake failure" in error["description"]


async def test_speech_to_text_dropping_gives_the_caller_the_fallback_line(
    media, fake_stt, fake_tts, fake_anthropic, media_persona
):
    fallback = media_persona.fallback_line
    assert fallback
    fake_stt.queue(SttTurn(drop=True))  # the provider's connection dies at the end of the turn
    await media.play(fake_tts, GREETING)

    await media.say(clip("hello"), silence_ms=800)
    await media.play(fake_tts, fallback)  # its phrases went to text-to-speech and were played

    assert fake_stt.commits == 1
    assert fallback in "".join(fake_tts.texts)
    assert fake_anthropic.requests == []  # there was no transcript to answer
    await media.hang_up()
    stored = await turns()
    assert [(t.sequence, t.role, t.text) for t in stored] == [
        (0, "assistant", GREETING),
        (1, "assistant", fallback),
    ]
    assert not stored[1].interrupted
    [error] = errors_from(await stored_call(), "stt")
    assert error["description"]


async def test_speech_to_text_down_before_the_turn_still_gets_the_fallback_line_each_turn(
    media, fake_stt, fake_tts, fake_anthropic, media_persona
):
    fallback = media_persona.fallback_line
    await media.play(fake_tts, GREETING)
    await fake_stt.wait_for(lambda f: len(f.connections) == 1)
    fake_stt.drop()  # the network to the provider fails between turns

    await media.say(clip("hello"), silence_ms=800)
    await media.play(fake_tts, fallback)
    await media.say(clip("hello"), silence_ms=800)  # the next turn is apologised for too
    await media.play(fake_tts, fallback)

    assert fake_anthropic.requests == []
    await media.hang_up()
    stored = await turns()
    assert [(t.sequence, t.role, t.text) for t in stored] == [
        (0, "assistant", GREETING),
        (1, "assistant", fallback),
        (2, "assistant", fallback),
    ]
    assert len(errors_from(await stored_call(), "stt")) == 1  # stored once, not once a turn


@pytest.mark.parametrize(
    "first_tokens",
    [
        pytest.param(0, id="no-token-yet"),
        # One short token, which the speaker's phrase chunker holds: it must neither be spoken
        # later (glued to the next reply) nor be stored or sent to the model as heard.
        pytest.param(1, id="one-short-token-held-for-its-phrase"),
    ],
)
async def test_a_turn_during_processing_is_answered_and_the_unspoken_reply_dropped(
    media, fake_stt, fake_tts, fake_anthropic, first_tokens
):
    # The model's first reply sends `first_tokens` short tokens, then thinks: nothing is spoken yet.
    fake_anthropic.queue(
        FakeReply(tokens=["Let me", " look that up for you."], hold_after=first_tokens),
        FakeReply(tokens=["Sure,", " we also deliver."]),
    )
    fake_stt.reply_with("Do you have pizza?", "And do you deliver?")
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)
    assert (await fake_anthropic.wait_held()).tokens_sent == first_tokens
    assert len(fake_tts.texts) == media.spoken  # nothing of the first reply went to speech

    await media.say(clip("hello"), silence_ms=800)  # the caller asks again
    # Echo the reply's marks until its last words are out (bounded by next_event's timeout).
    while not "".join(fake_tts.texts[media.spoken :]).endswith("we also deliver.") or len(
        [f for f in media.received if f["event"] == "mark"]
    ) < len(fake_tts.texts):
        await media.echo(await media.next_event("mark"))
    spoken = fake_tts.texts[media.spoken :]

    assert fake_stt.commits == 2
    await fake_anthropic.streams[0].wait_ended()
    assert fake_anthropic.streams[0].closed_early  # the held reply was stopped
    second = fake_anthropic.requests[1]["messages"]
    # Consecutive caller turns reach the model as one message (the history alternates roles).
    assert second[-1]["role"] == "user" and second[-1]["content"].endswith("And do you deliver?")
    await media.hang_up()

    stored = await turns()
    assert [t.sequence for t in stored] == list(range(len(stored)))  # no gap
    assert [t.text for t in stored if t.role == "user"] == ["Do you have pizza?", "And do you deliver?"]
    assert (stored[-1].role, stored[-1].text, stored[-1].interrupted) == (
        "assistant",
        "Sure, we also deliver.",
        False,
    )
    assert stored[-2].text == "And do you deliver?"
    held = [t for t in stored[2:-2] if t.role == "assistant"]
    assert all(t.interrupted for t in held)
    assert "".join(spoken) == "Sure, we also deliver."  # exactly the second reply: nothing older
    assert [t.text for t in held] in ([], [""])  # the caller heard none of the first reply
    assert "Let me" not in str(second)  # nor is the model told it said it


@pytest.fixture
def keypad_persona(media_persona):
    media_persona.dtmf_enabled, media_persona.dtmf_pause_seconds = True, 30
    media_persona.save()
    return media_persona


async def test_keypad_digits_reach_the_model_as_one_number(keypad_persona, media, fake_tts, fake_anthropic):
    fake_anthropic.queue(FakeReply(tokens=["Thanks,", " account 42 found."]))
    await media.play(fake_tts, GREETING)
    for n, digit in enumerate("42#"):
        await media.ws.send_json_to(
            {
                "event": "dtmf",
                "streamSid": STREAM_SID,
                "sequenceNumber": str(100 + n),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )
    await media.play(fake_tts, "Thanks, account 42 found.")

    [request] = fake_anthropic.requests
    assert request["messages"][-1] == {"role": "user", "content": "The caller typed 42 on the keypad."}
    await media.hang_up()
    stored = await turns()
    assert [(t.role, t.text) for t in stored] == [
        ("assistant", GREETING),
        ("user", "The caller typed 42 on the keypad."),
        ("assistant", "Thanks, account 42 found."),
    ]


async def test_odd_frames_before_and_during_the_call_break_nothing(
    twilio_post, sign_handshake, media_persona, fake_stt, fake_tts, fake_anthropic, caplog
):
    """Media, a mark and a key before `start`, unknown events, a mark never sent, a second `stop`."""
    from voiceproject.asgi import application

    caplog.set_level(logging.INFO)
    response = await sync_to_async(twilio_post, thread_sensitive=False)(
        "/twilio/voice/", {"CallSid": CALL_SID, "From": "+14155550198", "To": "+14155550100"}
    )
    parameters = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)" />', response.content.decode()))
    communicator = WebsocketCommunicator(
        application,
        "/ws/media/",
        headers=[(b"x-twilio-signature", sign_handshake("wss://switchboard.example.com/ws/media/").encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    media = MediaClient(communicator)
    try:
        await media.say(clip("hello"), silence_ms=100)  # before `start`: nowhere to go
        await media.ws.send_json_to({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "s1"}})
        await media.ws.send_json_to(
            {"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track", "digit": "1"}}
        )
        assert await media.ws.receive_nothing(0.2)
        await media.start(parameters)

        await media.play(fake_tts, GREETING)
        await media.ws.send_json_to({"event": "dance"})
        await media.ws.send_json_to({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "nobody"}})
        await media.ws.send_json_to(
            {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "s1"}}
        )  # again
        await media.ws.send_json_to({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        fake_stt.reply_with("Still there?")
        fake_anthropic.queue(FakeReply(tokens=["Yes,", " still here."]))
        await media.say(clip("hello"), silence_ms=800)
        await media.play(fake_tts, "Yes, still here.")

        stop = {"event": "stop", "streamSid": STREAM_SID, "stop": {"callSid": CALL_SID}}
        await media.ws.send_json_to(stop)
        await media.ws.send_json_to(stop)  # Twilio's, twice: the second finds the call closed
        await media.ws.send_json_to({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "s2"}})
        assert await media.ws.receive_nothing(0.2)
    finally:
        await communicator.disconnect()

    assert fake_stt.commits == 1
    assert len(fake_anthropic.requests) == 1  # the early key press reached no model
    stored = await turns()
    assert [(t.sequence, t.role, t.text) for t in stored] == [
        (0, "assistant", GREETING),
        (1, "user", "Still there?"),
        (2, "assistant", "Yes, still here."),
    ]
    assert not stored[2].interrupted
    call = await stored_call()
    assert call.ended_at is not None
    assert server_errors(caplog) == []


async def test_the_agent_ending_the_call_closes_the_stream_after_the_goodbye_and_hangs_up(
    media, fake_stt, fake_tts, fake_anthropic, twilio_post, settings
):
    settings.RELAY_SPEECH_CHARS_PER_SECOND = 1_000_000  # the engine's estimate: said at once
    settings.RELAY_END_GRACE_SECONDS = 0.05
    fake_stt.reply_with("That's all, thanks.")
    fake_anthropic.queue(
        FakeReply(
            tokens=["Goodbye,", " have a nice day."],
            tool_use={"name": "end_call", "input": {"reason": "caller is done"}},
        )
    )
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)

    goodbye_marks = []
    while "".join(fake_tts.texts[media.spoken :]) != "Goodbye, have a nice day." or len(goodbye_marks) < len(
        fake_tts.texts[media.spoken :]
    ):
        goodbye_marks.append(await media.next_event("mark"))
    # Not closed while the goodbye is still playing at Twilio.
    assert await media.ws.receive_nothing(0.3)
    for mark in goodbye_marks:
        await media.echo(mark)
    closing = await media.ws.receive_output(5)
    assert closing["type"] == "websocket.close", closing

    call = await stored_call()  # every write was applied before the socket closed
    assert call.metadata["handoff"] == {"action": "end", "reason": "caller is done"}
    assert call.ended_at is not None
    stored = await turns()
    assert [(t.role, t.text) for t in stored] == [
        ("assistant", GREETING),
        ("user", "That's all, thanks."),
        ("assistant", "Goodbye, have a nice day."),
    ]
    assert not stored[2].interrupted
    assert stored[2].tool_calls == [
        {
            "name": "end_call",
            "arguments": {"reason": "caller is done"},
            "executed": True,
            "result": "end sent to Twilio",
        }
    ]

    # On the ORM's own thread, whose connection is closed after the test (no session left open).
    response = await sync_to_async(twilio_post)(
        "/twilio/stream-action/", {"CallSid": CALL_SID, "CallStatus": "in-progress"}
    )
    assert response.status_code == 200
    twiml = ElementTree.fromstring(response.content)
    assert twiml.find("Hangup") is not None, response.content
    assert twiml.find("Dial") is None and twiml.find("Connect") is None
