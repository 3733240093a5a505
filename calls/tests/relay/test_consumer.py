"""The ConversationRelay socket end to end: the real ASGI app, real Postgres, and the real
provider SDKs talking to fake provider servers on loopback. Every test runs once per provider:
truncation, cancellation and history rules must not depend on the model behind them."""

from __future__ import annotations

import asyncio
import itertools
from xml.etree import ElementTree

import pytest
from asgiref.sync import sync_to_async

from agents.llm.history import CALL_CONNECTED
from agents.models import Persona
from calls.models import Call, Turn
from calls.store.db import in_db_thread
from calls.tests.conftest import backend_pid

pytestmark = [pytest.mark.django_db(transaction=True)]

CALL_SID = "CA" + "a" * 32
GREETING = "Hello, how can I help?"
REPLY = [
    "Sure",
    ",",
    " we",
    " open",
    " at",
    " nine",
    " on",
    " Saturdays",
    " and",
    " close",
    " at",
    " noon",
    ".",
]


@pytest.fixture(params=["anthropic", "openai"])
def llm(request, default_persona):
    """The fake provider server this test's persona talks to, through that provider's real SDK."""
    if request.param == "openai":
        default_persona.llm_provider = "openai"
        default_persona.llm_model = "gpt-test"
        default_persona.save()
        return request.getfixturevalue("fake_openai")
    return request.getfixturevalue("fake_anthropic")


def scripted(fake, **reply):
    """One scripted reply in the format of `fake`'s own FakeReply."""
    return type(fake.default)(**reply)


def system_of(request: dict) -> str:
    if "system" in request:
        return request["system"]
    return next(m["content"] for m in request["messages"] if m["role"] == "system")


def history(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m["role"] != "system"]


@pytest.fixture
def live_call(default_persona, llm) -> Call:
    """A call the voice webhook answered: the greeting is turn 0."""
    default_persona.welcome_greeting = GREETING
    default_persona.save()
    call = Call.objects.create(call_sid=CALL_SID, persona=default_persona, from_number="+14155550198")
    Turn.objects.create(
        call=call, sequence=0, role=Turn.Role.ASSISTANT, text=GREETING, generated_text=GREETING
    )
    return call


def text_of(frames: list[dict]) -> str:
    return "".join(frame["token"] for frame in frames)


def roles(request: dict) -> list[str]:
    return [message["role"] for message in history(request)]


def assert_alternates(request: dict) -> None:
    sequence = roles(request)
    assert sequence[0] == "user" and sequence[-1] == "user", sequence
    assert all(a != b for a, b in itertools.pairwise(sequence)), sequence
    assert all(message["content"].strip() for message in history(request))


async def turns_of(call: Call) -> list[Turn]:
    return [turn async for turn in Turn.objects.filter(call=call).in_order()]


async def test_a_reply_streams_token_by_token_and_closes_the_talk_cycle_once(relay, live_call, llm):
    llm.reply_with(REPLY)
    caller = await relay()
    await caller.prompt("When are you open on Saturday?")
    frames = await caller.reply()

    assert [f["last"] for f in frames] == [False] * len(REPLY) + [True]
    assert all(f["type"] == "text" for f in frames) and frames[-1]["token"] == ""
    assert text_of(frames) == "".join(REPLY)
    assert await caller.ws.receive_nothing(0.1)
    await caller.hang_up()

    request = llm.requests[0]
    assert request["stream"] is True and system_of(request) == live_call.persona.system_prompt
    assert history(request) == [
        {"role": "user", "content": CALL_CONNECTED},
        {"role": "assistant", "content": GREETING},
        {"role": "user", "content": "When are you open on Saturday?"},
    ]
    _greeting, user, assistant = await turns_of(live_call)
    assert (user.role, user.text) == ("user", "When are you open on Saturday?")
    assert (assistant.role, assistant.text, assistant.generated_text) == (
        "assistant",
        "".join(REPLY),
        "".join(REPLY),
    )
    assert not assistant.interrupted
    assert assistant.first_token_ms is not None and assistant.completed_ms >= assistant.first_token_ms


async def test_an_interrupt_stops_the_reply_closes_the_stream_and_keeps_what_was_heard(relay, live_call, llm):
    llm.queue(scripted(llm, tokens=REPLY, hold_after=8), scripted(llm, tokens=["Noon", " it", " is", "."]))
    caller = await relay()
    await caller.prompt("When are you open on Saturday?")
    sent = await caller.tokens(8)  # "Sure, we open at nine on Saturdays"
    assert "".join(sent) == "Sure, we open at nine on Saturdays"

    await caller.interrupt("Sure, we open at 9 on", duration_ms=1500)
    stream = await llm.streams[0].wait_ended()
    assert stream.closed_early and not stream.completed and stream.tokens_sent == 8
    assert await caller.ws.receive_nothing(0.2)  # not one more token of the old reply

    await caller.prompt("And Sunday?")
    frames = await caller.reply()
    assert text_of(frames) == "Noon it is."
    await caller.hang_up()

    second = llm.requests[1]
    assert history(second)[-2:] == [
        {"role": "assistant", "content": "Sure, we open at nine on"},
        {"role": "user", "content": "And Sunday?"},
    ]
    assert_alternates(second)
    interrupted = (await turns_of(live_call))[2]
    assert interrupted.interrupted and interrupted.text == "Sure, we open at nine on"
    assert interrupted.generated_text == "Sure, we open at nine on Saturdays"
    assert interrupted.heard_confidence == pytest.approx(1.0)


async def test_an_interrupt_after_the_reply_finished_truncates_the_stored_turn(relay, live_call, llm):
    llm.reply_with(REPLY, ["Okay", "."])
    caller = await relay()
    await caller.prompt("When are you open on Saturday?")
    await caller.reply()
    await caller.interrupt("Sure, we open at nine on Satur", duration_ms=2000)
    await caller.prompt("Thanks")
    await caller.reply()
    await caller.hang_up()

    assert history(llm.requests[1])[-2]["content"] == "Sure, we open at nine on Satur"
    turn = (await turns_of(live_call))[2]
    assert turn.interrupted and turn.text == "Sure, we open at nine on Satur"
    assert turn.generated_text == "".join(REPLY)


async def test_an_interrupt_during_the_greeting_truncates_the_greeting(relay, live_call, llm):
    llm.reply_with(["Yes", "?"])
    caller = await relay()
    await caller.interrupt("Hello, how", duration_ms=700)
    await caller.prompt("Hi, quick question")
    await caller.reply()
    await caller.hang_up()
    assert history(llm.requests[0])[1] == {"role": "assistant", "content": "Hello, how"}
    greeting = (await turns_of(live_call))[0]
    assert greeting.interrupted and greeting.text == "Hello, how" and greeting.generated_text == GREETING


async def test_a_prompt_while_generating_cancels_the_reply_and_history_still_alternates(
    relay, live_call, llm
):
    llm.queue(
        scripted(llm, tokens=REPLY, hold_after=3),
        scripted(llm, tokens=["On", " Sunday", " we", " rest", "."]),
    )
    caller = await relay()
    await caller.prompt("When are you open on Saturday?")
    assert "".join(await caller.tokens(3)) == "Sure, we"
    await caller.prompt("Actually, what about Sunday?")
    frames = await caller.reply()
    assert text_of(frames) == "On Sunday we rest."
    assert (await llm.streams[0].wait_ended()).closed_early
    await caller.hang_up()

    second = llm.requests[1]
    assert_alternates(second)
    assert history(second)[-2:] == [
        {"role": "assistant", "content": "Sure, we"},
        {"role": "user", "content": "Actually, what about Sunday?"},
    ]
    cut = (await turns_of(live_call))[2]
    assert cut.interrupted and cut.text == cut.generated_text == "Sure, we"


async def test_a_phrase_held_back_when_a_new_prompt_comes_is_not_stored_as_said(relay, live_call, llm):
    live_call.persona.speech_chunking = "phrase"
    await live_call.persona.asave()
    llm.queue(scripted(llm, tokens=REPLY, hold_after=5), scripted(llm, tokens=["Noon", "."]))
    caller = await relay()
    await caller.prompt("When are you open on Saturday?")
    assert await caller.tokens(1) == ["Sure,"]
    assert await caller.ws.receive_nothing(0.2)  # " we open at" waits for the rest of its phrase
    await caller.prompt("And on Sunday?")
    assert text_of(await caller.reply()) == "Noon."
    await caller.hang_up()

    cut = (await turns_of(live_call))[2]
    assert (cut.text, cut.interrupted, cut.heard_confidence) == ("Sure,", True, 1.0)
    assert cut.generated_text.startswith("Sure, we")
    assert history(llm.requests[1])[-2]["content"] == "Sure,"


async def test_two_prompts_before_any_token_are_sent_as_one_user_turn(relay, live_call, llm):
    llm.queue(scripted(llm, tokens=REPLY, ttft=30), scripted(llm, tokens=["Got", " it", "."]))
    caller = await relay()
    await caller.prompt("I need to book")
    await llm.wait_for_requests(1)
    await caller.prompt("a cleaning for Friday")
    assert text_of(await caller.reply()) == "Got it."
    await caller.hang_up()

    second = llm.requests[1]
    assert_alternates(second)
    assert history(second)[-1] == {"role": "user", "content": "I need to book\na cleaning for Friday"}
    stored = [(t.role, t.text) for t in await turns_of(live_call)]
    assert stored[1:] == [
        ("user", "I need to book"),
        ("user", "a cleaning for Friday"),
        ("assistant", "Got it."),
    ]


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        "[1, 2, 3]",
        '"just a string"',
        '{"voicePrompt": "no type"}',
        '{"type": 42}',
        '{"type": "teleport", "where": "mars"}',
        '{"type": "prompt", "last": true}',
        '{"type": "prompt", "voicePrompt": ' + '"' + "x" * 70_000 + '", "last": true}',
        '{"type": "setup"}',
        '{"type": "setup", "callSid": "CA1", "customParameters": [1]}',
    ],
)
async def test_malformed_frames_are_ignored_and_the_call_goes_on(relay, live_call, llm, frame, caplog):
    llm.reply_with(["Still", " here", "."])
    caller = await relay()
    await caller.ws.send_to(text_data=frame)
    await caller.ws.send_to(bytes_data=b"\x00\x01binary")
    assert await caller.ws.receive_nothing(0.1)  # never a non-protocol frame back
    await caller.prompt("Hello?")
    assert text_of(await caller.reply()) == "Still here."
    # Both frames were refused as malformed, the one under test as much as the binary one.
    ignored = [r for r in caplog.records if r.getMessage().startswith("relay frame ignored")]
    assert len(ignored) == 2, [r.getMessage() for r in ignored]


async def test_a_provider_error_mid_stream_speaks_the_fallback_and_the_call_goes_on(relay, live_call, llm):
    fallback = live_call.persona.fallback_line
    llm.queue(scripted(llm, tokens=REPLY, error_event_after=3), scripted(llm, tokens=["Back", "."]))
    caller = await relay()
    await caller.prompt("When are you open?")
    # What was said ends its own talk cycle; the fallback follows as a new one, never spliced.
    assert text_of(await caller.reply()) == "Sure, we"
    assert text_of(await caller.reply()) == fallback
    await caller.prompt("Hello?")
    assert text_of(await caller.reply()) == "Back."
    await caller.hang_up()

    failed, apology = (await turns_of(live_call))[2:4]
    assert failed.text == failed.generated_text == "Sure, we"
    assert (apology.role, apology.text) == ("assistant", fallback)
    await live_call.arefresh_from_db()
    [error] = live_call.metadata["errors"]
    assert error["source"] == "model" and error["turn"] == 2 and error["error"]
    assert_alternates(llm.requests[1])


@pytest.mark.parametrize(
    "failure",
    [{"status": 400, "error_type": "invalid_request_error"}, {"tokens": REPLY, "cut_after": 4}],
    ids=["http-error", "connection-cut"],
)
async def test_provider_failures_of_every_kind_end_in_the_fallback_line(relay, live_call, llm, failure):
    llm.queue(scripted(llm, **failure))
    caller = await relay()
    await caller.prompt("Hello?")
    frames = await caller.reply()
    if "cut_after" in failure:  # what was said first closes its own talk cycle
        assert text_of(frames) == "".join(REPLY[:4])
        frames = await caller.reply()
    assert text_of(frames) == live_call.persona.fallback_line
    assert frames[-1] == {"type": "text", "token": "", "last": True}


async def test_hanging_up_mid_reply_stores_every_turn_ends_the_call_and_leaves_no_task(relay, live_call, llm):
    llm.queue(scripted(llm, tokens=REPLY, hold_after=5))
    caller = await relay()
    await caller.prompt("When are you open on Saturday?")
    await caller.tokens(5)
    await caller.hang_up()

    assert (await llm.streams[0].wait_ended()).closed_early
    stored = [(t.role, t.text, t.interrupted) for t in await turns_of(live_call)]
    assert stored == [
        ("assistant", GREETING, False),
        ("user", "When are you open on Saturday?", False),
        ("assistant", "Sure, we open at", True),
    ]
    await live_call.arefresh_from_db()
    assert live_call.status == Call.Status.COMPLETED and live_call.ended_at is not None
    leftovers = [
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(("reply:", "call-writes"))
    ]
    assert leftovers == []


async def test_dtmf_is_stored_as_caller_input_and_answered(relay, live_call, llm):
    llm.reply_with(["You", " pressed", " five", "."])
    caller = await relay()
    await caller.ws.send_json_to({"type": "dtmf", "digit": "5"})
    assert text_of(await caller.reply()) == "You pressed five."
    await caller.hang_up()
    assert history(llm.requests[0])[-1] == {"role": "user", "content": "The caller pressed 5."}


async def test_setup_binds_the_session_and_an_error_frame_is_kept(relay, live_call):
    caller = await relay()
    await caller.ws.send_json_to({"type": "error", "description": "Invalid message received"})
    await caller.hang_up()
    await live_call.arefresh_from_db()
    assert live_call.session_id == "VX" + "0" * 32
    assert live_call.metadata["customParameters"] == {"call_ref": "test"}
    assert live_call.started_at is not None
    assert live_call.metadata["errors"][0]["description"] == "Invalid message received"


async def test_setup_for_a_call_the_webhook_never_saw_creates_it(relay, default_persona, llm):
    llm.reply_with(["Hi", "."])
    caller = await relay("CA" + "b" * 32)
    await caller.prompt("Hello")
    assert text_of(await caller.reply()) == "Hi."
    await caller.hang_up()
    call = await Call.objects.aget(call_sid="CA" + "b" * 32)
    assert call.persona_id == default_persona.pk and call.to_number == "+14155550100"
    assert [t.role async for t in Turn.objects.filter(call=call).in_order()] == ["user", "assistant"]


@pytest.mark.parametrize("signature", ["", "bm90LXRoZS1zaWduYXR1cmU="], ids=["missing", "wrong"])
async def test_a_handshake_without_a_valid_signature_is_refused(relay, live_call, signature):
    assert await relay(signature=signature) is None


async def test_the_handshake_signed_for_the_trailing_slash_variant_is_accepted(
    relay, live_call, sign_handshake
):
    assert await relay(signature=sign_handshake("wss://switchboard.example.com/ws/relay")) is not None


async def test_without_an_api_key_the_demo_model_answers(relay, live_call, settings):
    settings.ANTHROPIC_API_KEY = settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    caller = await relay()
    await caller.prompt("Is anyone there?")
    reply = text_of(await caller.reply())
    assert "demo model" in reply and "Is anyone there?" in reply


async def test_a_dropped_socket_reconnects_and_the_new_session_resumes_the_stored_history(
    relay, live_call, llm, twilio_post
):
    llm.reply_with(REPLY, ["Yes", ",", " still", " here", "."])
    first = await relay()
    await first.prompt("When are you open on Saturday?")
    await first.reply()
    await first.hang_up()  # our socket drops while Twilio still has the caller on the line

    response = await sync_to_async(twilio_post)(
        "/twilio/relay-action/",
        {
            "CallSid": CALL_SID,
            "CallStatus": "in-progress",
            "SessionStatus": "failed",
            "SessionId": "VX" + "0" * 32,
            "ErrorCode": "64105",
        },
    )
    relay_twiml = ElementTree.fromstring(response.content).find("./Connect/ConversationRelay")
    assert relay_twiml is not None and "welcomeGreeting" not in relay_twiml.attrib

    second = await relay()
    await second.prompt("Are you still there?")
    assert text_of(await second.reply()) == "Yes, still here."
    await second.hang_up()

    assert history(llm.requests[1]) == [
        {"role": "user", "content": CALL_CONNECTED},
        {"role": "assistant", "content": GREETING},
        {"role": "user", "content": "When are you open on Saturday?"},
        {"role": "assistant", "content": "".join(REPLY)},
        {"role": "user", "content": "Are you still there?"},
    ]
    assert [t.sequence for t in await turns_of(live_call)] == [0, 1, 2, 3, 4]


async def test_a_socket_whose_end_comes_after_twilio_reconnected_the_call_does_not_end_it(
    relay, live_call, llm, twilio_post
):
    llm.reply_with(REPLY, ["Yes", ",", " still", " here", "."])
    first = await relay()
    await first.prompt("When are you open on Saturday?")
    await first.reply()
    # Twilio saw the session fail and asks what next before our server noticed the socket go.
    params = {"CallSid": CALL_SID, "CallStatus": "in-progress", "SessionStatus": "failed"}
    response = await sync_to_async(twilio_post)("/twilio/relay-action/", params)
    assert ElementTree.fromstring(response.content).find("./Connect/ConversationRelay") is not None
    await first.hang_up()

    await live_call.arefresh_from_db()
    assert (live_call.status, live_call.ended_at) == (Call.Status.IN_PROGRESS, None)
    assert live_call.summary_status == Call.SummaryStatus.PENDING
    second = await relay()
    await second.prompt("Are you still there?")
    assert text_of(await second.reply()) == "Yes, still here."
    await second.hang_up()
    await live_call.arefresh_from_db()
    assert (live_call.status, live_call.metadata["ended_by"]) == (Call.Status.COMPLETED, "socket")
    assert live_call.summary_status == Call.SummaryStatus.QUEUED


async def test_a_model_that_goes_silent_is_cut_off_and_the_caller_hears_the_fallback(
    relay, live_call, llm, settings
):
    settings.RELAY_REPLY_TIMEOUT_SECONDS = 0.5
    llm.queue(scripted(llm, tokens=REPLY, hold_after=2))
    caller = await relay()
    await caller.prompt("Hello?")
    assert text_of(await caller.reply()) == "Sure,"
    assert text_of(await caller.reply()) == live_call.persona.fallback_line
    assert (await llm.streams[0].wait_ended()).closed_early


async def test_a_setup_that_cannot_be_bound_closes_the_socket_cleanly(relay, db, caplog):
    # No persona at all: the call can't be created, so the socket closes for Twilio to handle.
    caller = await relay("CA" + "d" * 32, setup=False)
    await Persona.objects.all().adelete()
    await caller.setup()
    closed = await caller.ws.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 1011}
    assert "relay frame CallStart failed" in caplog.text
    caller.closed = True


async def test_a_hang_up_keeps_the_database_connection_every_call_shares(relay, live_call, llm):
    before = await in_db_thread(backend_pid)
    caller = await relay()
    await caller.hang_up()  # returns once the consumer has finished

    assert await in_db_thread(backend_pid) == before
