"""A Media Streams persona with phrase chunking: the speaker cuts the phrases for the voice, so
the engine does not cut them first (twice cut, each phrase waited for the next one)."""

from __future__ import annotations

import pytest

from agents.models import Persona
from calls.media.clips import clip
from calls.tests.media.conftest import GREETING
from fakes.base import FakeReply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def media_persona(media_persona: Persona) -> Persona:
    media_persona.speech_chunking = Persona.Chunking.PHRASE
    media_persona.token_gap_timeout_seconds = 30  # the stall below is not cut short meanwhile
    media_persona.save()
    return media_persona


async def test_the_first_phrase_is_spoken_while_the_model_is_still_writing(
    media, fake_stt, fake_tts, fake_anthropic
):
    fake_stt.reply_with("Hi?")
    # The model sends the first sentence and the next word, then stalls mid-reply.
    fake_anthropic.queue(FakeReply(tokens=["Hello", " there.", " How", " can", " I", " help?"], hold_after=3))
    await media.play(fake_tts, GREETING)
    await media.say(clip("hello"), silence_ms=800)

    await media.play(fake_tts, "Hello there.")  # before the model writes another word
    await media.hang_up()
