"""An agent process answering a Media Streams call: real audio through VAD, the fake speech
servers, and the agent socket in place of a model. Twilio's side is the media tests' MediaClient."""

from __future__ import annotations

import pytest

from agents.models import Persona
from calls.media.clips import clip
from calls.tests.media.conftest import (  # noqa: F401 (fixtures)
    CALL_SID,
    GREETING,
    fake_tts,
    media,
    media_persona,
    turns,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client_side(media_persona) -> Persona:  # noqa: F811
    media_persona.llm_provider = Persona.LlmProvider.AGENT
    media_persona.save()
    return media_persona


async def test_an_agent_answers_a_media_streams_call_and_hears_of_the_barge_in(
    client_side,
    agent_socket,
    media,  # noqa: F811
    fake_stt,
    fake_tts,  # noqa: F811
):
    agent = await agent_socket()
    fake_stt.reply_with("What are your hours?", "Wait, one question.")
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)

    turn = await agent.expect("turn.end", timeout=10)
    assert turn["text"] == "What are your hours?" and turn["call"]["call_sid"] == CALL_SID
    await agent.write(turn["turn_id"], "We are open", " Monday to Friday,", " from eight in the morning,")
    await agent.end(turn["turn_id"])  # streamed in full: the caller cuts it while it is spoken
    first = await media.next_event("mark")  # the first phrase is sent...
    await media.echo(first)  # ...and played; the rest is still queued at Twilio
    await media.next_event("mark")
    await media.say(clip("interrupt"))
    await media.next_event("clear")

    interrupted = await agent.expect("bot.interrupted", timeout=10)
    played = fake_tts.texts[media.spoken]
    assert interrupted == {"type": "bot.interrupted", "turn_id": turn["turn_id"], "heard": played}
    await media.hang_up()
    assert (await agent.expect("call.ended"))["turn_id"] is None
    reply = (await turns())[2]
    assert reply.interrupted and reply.text == played
