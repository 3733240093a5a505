"""The Media Streams socket end to end: the real ASGI app and Postgres, real speech audio through
Silero VAD, and the real speech-to-text, model and text-to-speech clients talking to fake
provider servers on loopback. The test plays Twilio: it sends the caller's audio as 20 ms mu-law
frames and echoes marks when it decides the audio before them has played."""

from __future__ import annotations

import asyncio
import base64

import pytest

from calls.media.clips import clip
from calls.models import Call
from calls.tests.media.conftest import CALL_SID, GREETING, STREAM_SID, turns
from fakes.base import FakeReply

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_a_spoken_turn_is_transcribed_answered_and_spoken_back(
    media, fake_stt, fake_tts, fake_anthropic
):
    fake_stt.reply_with("What are your hours?")
    fake_anthropic.queue(FakeReply(tokens=["We open", " at nine", " and close at five."]))

    await media.play(fake_tts, GREETING)  # synthesised in phrases, each sent with a mark
    await media.say(clip("hello"), silence_ms=800)

    await media.play(fake_tts, "We open at nine and close at five.")
    assert fake_stt.commits == 1 and len(fake_stt.audio) > 16000  # the clip's speech, at 16 kHz
    await media.hang_up()

    stored = await turns()
    assert [(t.role, t.text) for t in stored] == [
        ("assistant", GREETING),
        ("user", "What are your hours?"),
        ("assistant", "We open at nine and close at five."),
    ]
    assert not stored[2].interrupted
    frames = [f for f in media.received if f["event"] == "media"]
    assert frames and all(set(f) == {"event", "streamSid", "media"} for f in frames)
    assert all(len(base64.b64decode(f["media"]["payload"])) % 160 == 0 for f in frames)  # whole 20 ms frames


async def test_barge_in_clears_twilio_and_keeps_only_the_played_audio(
    media, fake_stt, fake_tts, fake_anthropic
):
    long_reply = [
        "We are open",
        " Monday to Friday,",
        " from eight in the morning",
        " until six at night,",
        " and on Saturdays until noon.",
    ]
    fake_stt.reply_with("When are you open?", "Wait, stop, I have a question.")
    fake_anthropic.queue(FakeReply(tokens=long_reply), FakeReply(tokens=["Of course, go ahead."]))
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)

    first = await media.next_event("mark")  # the first phrase of the reply is sent...
    await media.echo(first)  # ...and played; the rest is still queued at Twilio
    await media.next_event("mark")
    await media.say(clip("interrupt"))

    clear = await media.next_event("clear")
    assert clear == {"event": "clear", "streamSid": STREAM_SID}
    await media.hang_up()
    stored = await turns()
    reply = stored[2]
    played = fake_tts.texts[media.spoken]
    assert reply.interrupted and reply.text == played
    assert reply.generated_text == "".join(long_reply) and len(played) < len(reply.generated_text)
    assert reply.heard_confidence >= 0.9
    assert fake_tts.cancels >= 1  # the synthesis in progress was told to stop


async def test_bad_frames_are_dropped_and_counted_and_the_call_goes_on(
    media, fake_stt, fake_tts, fake_anthropic
):
    await media.play(fake_tts, GREETING)
    for bad in [
        "not json",
        "[1, 2]",
        '{"event": "media", "media": {"payload": "%%%"}}',
        '{"event": "dance"}',
        '{"event": "media", "media": {"payload": ""}}',
    ]:
        await media.ws.send_to(text_data=bad)
    await media.ws.send_to(bytes_data=b"\x00\x01")
    fake_stt.reply_with("Are you there?")
    fake_anthropic.queue(FakeReply(tokens=["Yes, I am here."]))
    await media.say(clip("hello"), silence_ms=800)
    await media.play(fake_tts, "Yes, I am here.")
    await media.hang_up()
    stored = await turns()
    assert [t.text for t in stored] == [GREETING, "Are you there?", "Yes, I am here."]


async def test_hanging_up_mid_speech_stores_what_was_spoken_and_leaves_no_task(
    media, fake_stt, fake_tts, fake_anthropic
):
    fake_tts.chunk_delay = 0.05  # the reply is still being synthesised when the caller hangs up
    fake_stt.reply_with("Tell me everything.")
    fake_anthropic.queue(FakeReply(tokens=["Here is a long answer", " that goes on and on", " for a while."]))
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)
    await media.next_event("media")
    before = {t for t in asyncio.all_tasks() if not t.done()}
    await media.hang_up()

    stored = await turns()
    assert stored[1].text == "Tell me everything." and stored[2].role == "assistant"
    reply = stored[2]  # nothing was played (no mark echoed): the caller heard none of it
    assert reply.interrupted and reply.text == "" and reply.generated_text.startswith("Here is a long answer")
    call = await Call.objects.aget(call_sid=CALL_SID)
    assert call.ended_at is not None
    # The call's own tasks (its speaker, reply, listener, speech providers' readers), by name.
    ours = [
        t
        for t in before
        if t.get_name().startswith(("speaker:", "reply:", "listen:", "end:", "together-stt", "Together TTS"))
    ]
    assert ours, sorted(t.get_name() for t in before)  # the check below sees what it should
    assert [t for t in ours if not t.done()] == []


async def test_barge_in_while_the_model_is_still_writing_keeps_the_played_phrase_and_stops_the_model(
    media, fake_stt, fake_tts, fake_anthropic
):
    # The model sends a few tokens, then holds (still generating) while the first phrase plays.
    tokens = ["Sure,", " we open at nine", " on weekdays", " and at ten", " on Saturdays."]
    fake_stt.reply_with("When are you open?", "Hang on.")
    fake_anthropic.queue(FakeReply(tokens=tokens, hold_after=3), FakeReply(tokens=["Go ahead."]))
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)

    await media.echo(await media.next_event("mark"))  # "Sure," played; the rest is held or queued
    await media.say(clip("interrupt"))
    await media.next_event("clear")
    assert (await fake_anthropic.streams[0].wait_ended()).closed_early  # the model was stopped
    await media.hang_up()

    reply = (await turns())[2]
    assert reply.interrupted and reply.text == "Sure,"
    assert reply.generated_text.startswith(reply.text) and reply.generated_text != reply.text


async def test_a_stream_for_a_call_we_did_not_answer_is_refused(twilio_post, sign_handshake, media_persona):
    from channels.testing import WebsocketCommunicator

    from calls.tests.media.conftest import MediaClient
    from voiceproject.asgi import application

    signature = sign_handshake("wss://switchboard.example.com/ws/media/")
    communicator = WebsocketCommunicator(
        application, "/ws/media/", headers=[(b"x-twilio-signature", signature.encode())]
    )
    connected, _ = await communicator.connect()
    assert connected  # the handshake is signed: a replay of a real one would be
    await MediaClient(communicator).start({"call_id": "999"})
    closed = await communicator.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 1008}  # policy violation: not our call
    assert not await Call.objects.filter(call_sid=CALL_SID).aexists()  # no call was made up
