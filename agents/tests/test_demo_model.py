"""The offline demo model: a stand-in that exercises every path of a call without a network."""

from __future__ import annotations

import pytest

from agents.llm import demo
from agents.llm.demo import DemoProvider, demo_turn
from agents.models import Persona
from calls.engine.reply import ReplyStream
from calls.engine.tools import tools_for
from fakes.replies import stream_reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def persona(default_persona) -> Persona:
    default_persona.transfer_enabled, default_persona.handoff_number = True, "+14155550999"
    return default_persona


def messages(text: str) -> list[dict]:
    return [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": text},
    ]


@pytest.mark.parametrize(
    ("said", "tool", "arguments"),
    [
        ("Okay, goodbye!", "end_call", {"reason": "caller said goodbye"}),
        ("Can I talk to a real person?", "transfer_to_human", {"reason": "caller asked for a person"}),
        ("Could we speak Spanish?", "switch_language", {"code": "es-MX"}),
    ],
)
def test_plain_cues_call_the_personas_tools(persona, said, tool, arguments):
    _text, [call] = demo_turn(persona.name, messages(said), tools_for(persona, ["en-US", "es-MX"]))
    assert call.name == tool and arguments.items() <= call.arguments.items()


def test_a_tool_the_persona_does_not_offer_is_never_called(persona):
    persona.end_call_enabled = False
    text, calls = demo_turn(persona.name, messages("bye"), tools_for(persona, ["en-US"]))
    assert calls == [] and "demo model" in text


def test_without_the_switch_tool_a_language_cue_gets_a_spoken_answer(persona):
    # The engine's follow-up turn after a switch offers no switch_language: the demo speaks.
    text, calls = demo_turn(persona.name, messages("Could we speak Spanish?"), tools_for(persona, ["en-US"]))
    assert calls == [] and "Could we speak Spanish?" in text


async def test_the_demo_streams_word_by_word_and_says_it_is_a_demo(persona, monkeypatch):
    monkeypatch.setattr(demo, "FIRST_TOKEN_DELAY", 0)  # its realistic pace is 1.4 s of waiting here
    monkeypatch.setattr(demo, "WORD_INTERVAL", 0)
    sent: list[str] = []

    async def sink(token: str) -> None:
        sent.append(token)

    reply = ReplyStream(sink)
    calls = await stream_reply(
        DemoProvider(), persona=persona, messages=messages("What time is it?"), reply=reply
    )
    assert calls == [] and reply.ended and len(sent) > 5
    assert "".join(sent).startswith("Still the demo model here.") and all(t.strip() for t in sent)
