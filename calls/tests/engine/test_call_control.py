"""Call control over the real socket: tools the model calls, the end-of-call marker, keypad
numbers, silence and time limits, language switches, speech chunking and text hygiene."""

from __future__ import annotations

import json
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from agents.models import Persona, PersonaLanguage
from calls.models import Call, Turn
from fakes.anthropic_server import FakeReply

pytestmark = [pytest.mark.django_db(transaction=True)]

CALL_SID = "CA" + "c" * 32


@pytest.fixture(autouse=True)
def quick_speech(settings):
    """Text-to-speech 'finishes' at once and the grace before `end` is short, to keep tests fast."""
    settings.RELAY_SPEECH_CHARS_PER_SECOND = 1_000_000
    settings.RELAY_END_GRACE_SECONDS = 0.05


@pytest.fixture
def persona(default_persona, fake_anthropic) -> Persona:
    default_persona.idle_timeout_seconds = None  # tests that want silence handling set it
    default_persona.save()
    return default_persona


@pytest.fixture
def call(persona) -> Call:
    return Call.objects.create(call_sid=CALL_SID, persona=persona, started_at=timezone.now())


async def frames_until(caller, kind: str, timeout: float = 5) -> list[dict]:
    """Every frame up to and including the first of type `kind`."""
    frames: list[dict] = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(await caller.ws.receive_json_from(timeout))
    return frames


def spoken(frames: list[dict]) -> str:
    return "".join(f["token"] for f in frames if f["type"] == "text")


async def stored_turns(call: Call) -> list[Turn]:
    return [t async for t in Turn.objects.filter(call=call).in_order()]


async def test_end_call_says_goodbye_first_then_ends_the_session(relay, call, fake_anthropic):
    fake_anthropic.queue(
        FakeReply(
            tokens=["Goodbye", ",", " Sam", "!"],
            tool_use={"name": "end_call", "input": {"reason": "caller is done"}},
        )
    )
    caller = await relay(CALL_SID)
    await caller.prompt("That's all, thanks.")
    frames = await frames_until(caller, "end")

    assert [f["type"] for f in frames] == ["text"] * 5 + ["end"]
    assert frames[-2] == {"type": "text", "token": "", "last": True}  # the talk cycle closed first
    assert json.loads(frames[-1]["handoffData"]) == {"action": "end", "reason": "caller is done"}
    assert spoken(frames) == "Goodbye, Sam!"
    assert [t["name"] for t in fake_anthropic.requests[0]["tools"]] == ["end_call"]
    await caller.hang_up()
    goodbye = (await stored_turns(call))[-1]
    assert goodbye.tool_calls == [
        {
            "name": "end_call",
            "arguments": {"reason": "caller is done"},
            "executed": True,
            "result": "end sent to Twilio",
        }
    ]


async def test_transfer_to_human_hands_the_call_back_with_the_reason_and_summary(
    relay, call, persona, fake_anthropic, twilio_post
):
    persona.transfer_enabled, persona.handoff_number = True, "+14155550999"
    await persona.asave()
    arguments = {"reason": "wants a person", "summary": "Billing question about March"}
    fake_anthropic.queue(
        FakeReply(
            tokens=["Transferring", " you", " now", "."],
            tool_use={"name": "transfer_to_human", "input": arguments},
        )
    )
    caller = await relay(CALL_SID)
    await caller.prompt("Can I talk to a real person?")
    frames = await frames_until(caller, "end")
    assert json.loads(frames[-1]["handoffData"]) == {"action": "transfer", **arguments}
    assert {t["name"] for t in fake_anthropic.requests[0]["tools"]} == {"end_call", "transfer_to_human"}
    await caller.hang_up()

    # Twilio hands the call back with the handoff data; the answer dials the persona's human.
    response = await sync_to_async(twilio_post)(
        "/twilio/relay-action/",
        {
            "CallSid": CALL_SID,
            "CallStatus": "in-progress",
            "SessionStatus": "ended",
            "HandoffData": frames[-1]["handoffData"],
        },
    )
    dial = ElementTree.fromstring(response.content).find("Dial")
    assert dial is not None and dial.text == "+14155550999"


async def test_a_terminal_tool_whose_goodbye_the_caller_interrupts_is_never_executed(
    relay, call, fake_anthropic, settings
):
    settings.RELAY_END_GRACE_SECONDS = 30  # the goodbye is still playing when the caller cuts in
    fake_anthropic.queue(
        FakeReply(
            tokens=["Goodbye", " then", "."], tool_use={"name": "end_call", "input": {"reason": "done"}}
        ),
        FakeReply(tokens=["Of", " course", "."]),
    )
    caller = await relay(CALL_SID)
    await caller.prompt("Thanks, bye.")
    await caller.reply()
    await caller.interrupt("Goodbye", duration_ms=300)
    await caller.prompt("Wait, one more thing!")
    assert spoken(await caller.reply()) == "Of course."
    assert await caller.ws.receive_nothing(0.2)  # no `end`
    await caller.hang_up()

    goodbye = (await stored_turns(call))[1]
    assert goodbye.text == "Goodbye" and goodbye.interrupted
    [record] = goodbye.tool_calls
    assert record["name"] == "end_call" and record["executed"] is False
    assert record["result"] == "not executed: the caller interrupted"


@pytest.mark.parametrize(
    "tokens",
    [["Bye", " now", ".", " [END", "_CA", "LL]"], ["Bye now. [", "END_CALL", "]"], ["Bye now.[END_CALL]"]],
)
async def test_the_end_of_call_marker_is_never_spoken_and_ends_the_call(
    relay, call, persona, fake_anthropic, tokens
):
    persona.end_call_enabled, persona.end_call_marker = False, "[END_CALL]"
    await persona.asave()
    fake_anthropic.queue(FakeReply(tokens=tokens))
    caller = await relay(CALL_SID)
    await caller.prompt("Bye!")
    frames = await frames_until(caller, "end")
    assert spoken(frames).strip() == "Bye now." and "[" not in spoken(frames)
    assert json.loads(frames[-1]["handoffData"])["action"] == "end"
    request = fake_anthropic.requests[0]
    assert "end your reply with [END_CALL]" in request["system"] and "tools" not in request
    await caller.hang_up()
    reply = (await stored_turns(call))[-1]
    assert reply.generated_text == "".join(tokens)  # the stored reply keeps what the model wrote
    assert reply.tool_calls[0]["executed"] is True


async def test_keypad_digits_become_one_number_on_hash_or_after_a_pause(relay, call, persona, fake_anthropic):
    persona.dtmf_enabled, persona.dtmf_pause_seconds = True, 0.3
    await persona.asave()
    fake_anthropic.reply_with(["Thanks", "."], ["Got", " it", "."])
    caller = await relay(CALL_SID)
    for key in "12*9876#":  # * starts over
        await caller.ws.send_json_to({"type": "dtmf", "digit": key})
    assert spoken(await caller.reply()) == "Thanks."
    for key in "42":
        await caller.ws.send_json_to({"type": "dtmf", "digit": key})
    assert spoken(await caller.reply()) == "Got it."  # sent once the caller paused
    await caller.hang_up()
    prompts = [request["messages"][-1]["content"] for request in fake_anthropic.requests]
    assert prompts == ["The caller typed 9876 on the keypad.", "The caller typed 42 on the keypad."]


async def test_silence_gets_check_ins_and_then_a_polite_end(relay, call, persona, fake_anthropic):
    persona.idle_timeout_seconds, persona.idle_max_reprompts = 1, 1
    await persona.asave()
    fake_anthropic.reply_with(["How", " can", " I", " help", "?"])
    caller = await relay(CALL_SID)
    await caller.prompt("Hello")
    await caller.reply()
    assert spoken(await caller.reply()) == persona.idle_reprompt_line
    frames = await frames_until(caller, "end")
    assert spoken(frames) == persona.idle_goodbye_line
    assert json.loads(frames[-1]["handoffData"]) == {"action": "end", "reason": "idle"}
    await caller.hang_up()
    texts = [t.text for t in await stored_turns(call)]
    assert texts == ["Hello", "How can I help?", persona.idle_reprompt_line, persona.idle_goodbye_line]


async def test_the_caller_speaking_resets_the_silence_count(relay, call, persona, fake_anthropic):
    persona.idle_timeout_seconds, persona.idle_max_reprompts = 1, 1
    await persona.asave()
    fake_anthropic.reply_with(["Yes", "?"], ["Sure", "."])
    caller = await relay(CALL_SID)
    await caller.prompt("Hello")
    await caller.reply()
    assert spoken(await caller.reply()) == persona.idle_reprompt_line
    await caller.prompt("Sorry, I'm here")
    assert spoken(await caller.reply()) == "Sure."
    assert spoken(await caller.reply()) == persona.idle_reprompt_line  # a check-in again, not the goodbye
    await caller.hang_up()


async def test_the_maximum_duration_ends_the_call_with_the_closing_line(relay, call, persona, fake_anthropic):
    persona.max_call_seconds = 60
    await persona.asave()
    call.started_at = timezone.now() - timedelta(seconds=59.7)
    await call.asave()
    fake_anthropic.queue(FakeReply(tokens=["Let", " me", " explain", " at", " length"], hold_after=2))
    caller = await relay(CALL_SID)
    await caller.prompt("Tell me everything")
    frames = await frames_until(caller, "end")
    assert spoken(frames) == "Let me" + persona.max_call_line
    assert json.loads(frames[-1]["handoffData"]) == {"action": "end", "reason": "max_duration"}
    assert (await fake_anthropic.streams[0].wait_ended()).closed_early
    await caller.hang_up()


async def test_switching_language_tells_twilio_and_later_replies_use_it(relay, call, persona, fake_anthropic):
    await PersonaLanguage.objects.acreate(persona=persona, code="es-MX", voice="es-MX-Neural2-A")
    fake_anthropic.queue(
        FakeReply(tokens=[], tool_use={"name": "switch_language", "input": {"code": "es-MX"}}),
        FakeReply(tokens=["Claro", ",", " hablemos", " en", " español", "."]),
        FakeReply(tokens=["Sí", "."]),
    )
    caller = await relay(CALL_SID)
    await caller.prompt("¿Habla español?")
    language = await caller.ws.receive_json_from(5)
    assert language == {"type": "language", "ttsLanguage": "es-MX", "transcriptionLanguage": "es-MX"}
    assert spoken(await caller.reply()) == "Claro, hablemos en español."
    await caller.prompt("Gracias")
    assert spoken(await caller.reply()) == "Sí."
    await caller.hang_up()

    first, follow_up, later = fake_anthropic.requests
    assert first["tools"][-1]["input_schema"]["properties"]["code"]["enum"] == [persona.language, "es-MX"]
    assert "es-MX" not in first["system"] and "es-MX" in follow_up["system"] and "es-MX" in later["system"]
    # The follow-up may not switch again (a model could loop); later turns may.
    assert "switch_language" not in {t["name"] for t in follow_up["tools"]}
    assert "switch_language" in {t["name"] for t in later["tools"]}
    await call.arefresh_from_db()
    assert call.metadata["language"] == "es-MX"


async def test_phrase_chunking_sends_phrases_without_splitting_abbreviations(
    relay, call, persona, fake_anthropic
):
    persona.speech_chunking = Persona.Chunking.PHRASE
    await persona.asave()
    text = "Sure. Dr. Patel can see you at 3.30 on Friday, e.g. after lunch, and the visit takes about half an hour."
    fake_anthropic.queue(FakeReply(tokens=[w for w in text.replace(" ", "\0 ").split("\0")]))
    caller = await relay(CALL_SID)
    await caller.prompt("When can I come in?")
    frames = await caller.reply()
    chunks = [f["token"] for f in frames if f["token"]]
    assert "".join(chunks) == text
    assert len(chunks[0].split()) <= 4  # a small first chunk: speech starts fast
    assert not any(c.rstrip().endswith(("Dr.", "e.g.", "3.")) for c in chunks)
    assert len(chunks) < len(text.split()) / 2  # phrases, not tokens
    await caller.hang_up()


async def test_markdown_and_emoji_never_reach_speech_but_the_stored_reply_keeps_them(
    relay, call, fake_anthropic
):
    tokens = [
        "**",
        "Great",
        "**",
        " news",
        " 🎉",
        "!",
        "\n",
        "- ",
        "Bring",
        " your",
        " `card`",
        " <",
        "now",
        ">",
    ]
    fake_anthropic.queue(FakeReply(tokens=tokens))
    caller = await relay(CALL_SID)
    await caller.prompt("Any news?")
    frames = await caller.reply()
    said = spoken(frames)
    assert said == "Great news! Bring your card &lt;now&gt;"
    assert all(f["token"].strip() or f["last"] for f in frames)  # no whitespace-only frames
    await caller.hang_up()
    assert (await stored_turns(call))[-1].generated_text == "".join(tokens)


async def test_a_reply_with_nothing_to_say_sends_no_empty_talk_cycle(relay, call, fake_anthropic):
    fake_anthropic.queue(FakeReply(tokens=["  ", "\n"]), FakeReply(tokens=["Hi", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("Hello?")
    await fake_anthropic.wait_for_requests(1)
    assert (await fake_anthropic.streams[0].wait_ended()).completed  # the whitespace-only reply
    assert await caller.ws.receive_nothing(0.1)  # ended without a talk cycle of its own
    await caller.prompt("Hello??")
    assert [f["token"] for f in await caller.reply()] == ["Hi", ".", ""]
