"""A model that stalls mid-reply on a Media Streams call: what was said is played and stored as
its own turn, and the fallback line is synthesised as phrases of its own, never glued onto the
unfinished sentence (calls/engine/stalls.py, the engine's fallback)."""

from __future__ import annotations

import pytest

from calls.media.clips import clip
from calls.tests.media.conftest import GREETING, turns
from fakes.base import FakeReply

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_a_stall_mid_reply_plays_what_was_said_then_the_fallback_as_new_phrases(
    media, fake_stt, fake_tts, fake_anthropic, media_persona
):
    media_persona.token_gap_timeout_seconds = 0.3
    await media_persona.asave()
    fallback = media_persona.fallback_line
    fake_stt.reply_with("When do you open?")
    fake_anthropic.queue(FakeReply(tokens=["We open at nine.", " And on", " Sundays"], hold_after=2))
    await media.play(fake_tts, GREETING)

    await media.say(clip("hello"), silence_ms=800)
    # The unfinished sentence, closed (its held words flushed), then the line in phrases of its own.
    await media.play(fake_tts, "We open at nine. And on")
    await media.play(fake_tts, fallback)
    assert (await fake_anthropic.streams[0].wait_ended()).closed_early
    await media.hang_up()

    stored = await turns()
    assert [(t.sequence, t.role, t.text, t.interrupted) for t in stored] == [
        (0, "assistant", GREETING, False),
        (1, "user", "When do you open?", False),
        (2, "assistant", "We open at nine. And on", False),
        (3, "assistant", fallback, False),
    ]
