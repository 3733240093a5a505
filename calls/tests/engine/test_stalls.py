"""A model that stalls: cut off by the persona's first-token and gap limits (and the total cap),
and the fallback line said as its own sentence and turn after what was already spoken.

The watch alone first, on an in-process delta source; then over the real socket, the real SDKs
and the fake provider servers, once per provider."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncGenerator

import pytest

from calls.engine.reply import ReplyStream, stream_into
from calls.engine.stalls import ReplyStalled, StallWatch
from calls.models import Call, Turn

CALL_SID = "CA" + "5" * 32
over_the_socket = pytest.mark.django_db(transaction=True)
GREETING = "Hello, how can I help?"
REPLY = ["Sure", ",", " we", " open", " at", " nine", " on", " Saturdays", "."]


# --- the watch -------------------------------------------------------------------------------
async def deltas(
    tokens: list[str], *, first: float = 0.0, every: float = 0.0, hold_after: int | None = None
) -> AsyncGenerator[str]:
    """A model on a timetable: `first` seconds to the first token, `every` between the others,
    and after `hold_after` tokens nothing more, ever."""
    for n, token in enumerate(tokens):
        if n == hold_after:
            await asyncio.Event().wait()
        await asyncio.sleep(first if n == 0 else every)
        yield token


async def collect(source: AsyncGenerator[str], watch: StallWatch) -> tuple[list[str], ReplyStream]:
    sent: list[str] = []

    async def sink(token: str) -> None:
        sent.append(token)

    reply = ReplyStream(sink)
    await stream_into(source, reply, watch)
    return sent, reply


async def test_no_first_token_in_time_raises_a_first_token_stall():
    started = time.monotonic()
    with pytest.raises(ReplyStalled) as stalled:
        await collect(deltas(REPLY, hold_after=0), StallWatch(first_token=0.2, gap=5))
    assert (stalled.value.kind, stalled.value.seconds) == ("first token", 0.2)
    assert "no first token within 0.2 s" in str(stalled.value)
    assert 0.2 <= time.monotonic() - started < 1.0


async def test_a_gap_after_some_tokens_raises_a_gap_stall_timed_from_the_last_token():
    # The first-token limit is long: the gap must still be measured from the last token.
    source = deltas(REPLY, first=0.05, every=0.05, hold_after=3)
    started = time.monotonic()
    with pytest.raises(ReplyStalled) as stalled:
        await collect(source, StallWatch(first_token=5, gap=0.3))
    elapsed = time.monotonic() - started
    assert stalled.value.kind == "gap" and "no token for 0.3 s" in str(stalled.value)
    assert 0.15 + 0.3 <= elapsed < 1.5, elapsed


async def test_a_slow_but_steady_reply_longer_than_the_gap_in_total_is_not_cut():
    tokens = [f" w{n}" for n in range(8)]
    started = time.monotonic()
    sent, reply = await collect(deltas(tokens, first=0.1, every=0.1), StallWatch(first_token=0.5, gap=0.4))
    assert time.monotonic() - started > 0.4 * 1.5  # well past one gap in total
    assert sent == tokens and reply.ended


async def test_a_stall_closes_the_model_stream_before_it_is_reported():
    closed = asyncio.Event()

    async def held() -> AsyncGenerator[str]:
        try:
            yield "Sure"
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.set()

    with pytest.raises(ReplyStalled):
        await collect(held(), StallWatch(first_token=1, gap=0.1))
    assert closed.is_set()


async def test_someone_else_cancelling_the_reader_is_a_cancel_not_a_stall():
    reading = asyncio.create_task(collect(deltas(REPLY, hold_after=1), StallWatch(first_token=5, gap=5)))
    await asyncio.sleep(0)  # let it enter the watch and wait for a token
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading


async def test_a_watch_without_limits_never_fires():
    sent, _ = await collect(deltas(REPLY[:2], first=0.05), StallWatch())
    assert sent == REPLY[:2]


# --- over the socket ---------------------------------------------------------------------------
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
    return type(fake.default)(**reply)


@pytest.fixture
def live_call(default_persona, llm) -> Call:
    """A call the voice webhook answered (the greeting is turn 0), with test-sized stall limits."""
    default_persona.welcome_greeting = GREETING
    default_persona.idle_timeout_seconds = None
    default_persona.first_token_timeout_seconds = 0.3
    default_persona.token_gap_timeout_seconds = 0.3
    default_persona.save()
    call = Call.objects.create(call_sid=CALL_SID, persona=default_persona)
    Turn.objects.create(
        call=call, sequence=0, role=Turn.Role.ASSISTANT, text=GREETING, generated_text=GREETING
    )
    return call


def text_of(frames: list[dict]) -> str:
    return "".join(frame["token"] for frame in frames)


async def stored(call: Call) -> list[tuple[int, str, str]]:
    return [(t.sequence, t.role, t.text) async for t in Turn.objects.filter(call=call).in_order()]


async def model_errors(call: Call) -> list[dict]:
    await call.arefresh_from_db()
    return [e for e in call.metadata.get("errors", []) if e["source"] == "model"]


def history(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m["role"] != "system"]


@over_the_socket
async def test_no_first_token_within_the_persona_limit_gives_the_fallback_as_the_reply(relay, live_call, llm):
    fallback = live_call.persona.fallback_line
    llm.queue(scripted(llm, tokens=REPLY, hold_after=0))
    caller = await relay(CALL_SID)
    prompted = time.monotonic()
    await caller.prompt("When are you open?")
    frames = await caller.reply()
    waited = time.monotonic() - prompted

    # The persona's 0.3 s, not the 8 s default nor the 60 s cap.
    assert 0.3 <= waited < 2.0, waited
    assert frames == [
        {"type": "text", "token": fallback, "last": False},
        {"type": "text", "token": "", "last": True},
    ]
    assert (await llm.streams[0].wait_ended()).closed_early  # the stalled stream is not left open
    await caller.hang_up()

    assert await stored(live_call) == [
        (0, "assistant", GREETING),
        (1, "user", "When are you open?"),
        (2, "assistant", fallback),
    ]
    answer = await Turn.objects.aget(call=live_call, sequence=2)
    assert answer.first_token_ms >= 300 and not answer.interrupted  # timed from the prompt
    [error] = await model_errors(live_call)
    assert error["turn"] == 2 and "no first token within 0.3 s" in error["error"]


@over_the_socket
async def test_a_stall_mid_reply_ends_what_was_said_then_says_the_fallback_as_its_own_turn(
    relay, live_call, llm
):
    fallback = live_call.persona.fallback_line
    llm.queue(scripted(llm, tokens=REPLY, hold_after=3), scripted(llm, tokens=["Nine", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("When are you open?")
    partial = await caller.reply()
    after = await caller.reply()

    # What was said closes its own talk cycle; the fallback is a new utterance, nothing spliced.
    assert partial == [
        {"type": "text", "token": "Sure", "last": False},
        {"type": "text", "token": ",", "last": False},
        {"type": "text", "token": " we", "last": False},
        {"type": "text", "token": "", "last": True},
    ]
    assert text_of(after) == fallback and after[-1]["last"] is True
    assert (await llm.streams[0].wait_ended()).closed_early

    await caller.prompt("Sorry?")
    assert text_of(await caller.reply()) == "Nine."
    await caller.hang_up()

    assert await stored(live_call) == [
        (0, "assistant", GREETING),
        (1, "user", "When are you open?"),
        (2, "assistant", "Sure, we"),
        (3, "assistant", fallback),
        (4, "user", "Sorry?"),
        (5, "assistant", "Nine."),
    ]
    cut = await Turn.objects.aget(call=live_call, sequence=2)
    assert (cut.generated_text, cut.interrupted) == ("Sure, we", False)
    [error] = await model_errors(live_call)
    assert error["turn"] == 2 and "no token for 0.3 s" in error["error"]
    # The model reads the two turns as one message of its own, in spoken order.
    messages = history(llm.requests[1])
    assert messages[-2:] == [
        {"role": "assistant", "content": f"Sure, we\n{fallback}"},
        {"role": "user", "content": "Sorry?"},
    ]
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in itertools.pairwise(roles)), roles


@over_the_socket
async def test_an_interrupt_during_the_fallback_keeps_what_was_heard_of_it(relay, live_call, llm):
    fallback = live_call.persona.fallback_line  # "Sorry, I'm having a little trouble right now. ..."
    heard = "Sorry, I'm having a little"
    assert fallback.startswith(heard)
    llm.queue(scripted(llm, tokens=REPLY, hold_after=3), scripted(llm, tokens=["Okay", "."]))
    caller = await relay(CALL_SID)
    await caller.prompt("When are you open?")
    await caller.reply()
    assert text_of(await caller.reply()) == fallback
    await caller.interrupt(heard, duration_ms=1500)
    await caller.prompt("Just tell me")
    assert text_of(await caller.reply()) == "Okay."
    await caller.hang_up()

    turns = [t async for t in Turn.objects.filter(call=live_call).in_order()]
    said, line = turns[2], turns[3]
    assert (said.text, said.interrupted) == ("Sure, we", False)
    assert (line.text, line.generated_text, line.interrupted) == (heard, fallback, True)
    assert history(llm.requests[1])[-2]["content"] == f"Sure, we\n{heard}"


@over_the_socket
async def test_a_slow_but_steady_reply_is_not_cut_by_the_gap_limit(relay, live_call, llm):
    # 0.1 s between tokens under a 0.3 s gap limit: about three gaps' worth in total.
    llm.queue(scripted(llm, tokens=REPLY, interval=0.1))
    caller = await relay(CALL_SID)
    await caller.prompt("When are you open?")
    frames = await caller.reply()
    assert text_of(frames) == "".join(REPLY)
    assert await caller.ws.receive_nothing(0.4)  # no fallback follows
    await caller.hang_up()

    assert (await stored(live_call))[-1] == (2, "assistant", "".join(REPLY))
    assert await model_errors(live_call) == []


@over_the_socket
async def test_the_total_cap_still_cuts_a_reply_that_never_stalls(relay, live_call, llm, settings):
    settings.RELAY_REPLY_TIMEOUT_SECONDS = 0.5
    fallback = live_call.persona.fallback_line
    tokens = ["w0", *(f" w{n}" for n in range(1, 40))]  # steady, 0.1 s apart: 4 s, far past the cap
    llm.queue(scripted(llm, tokens=tokens, interval=0.1))
    caller = await relay(CALL_SID)
    await caller.prompt("Tell me everything.")
    partial = await caller.reply()
    assert text_of(await caller.reply()) == fallback
    await caller.hang_up()

    said = text_of(partial)
    assert 1 <= len(partial) - 1 < len(tokens) and "".join(tokens).startswith(said)
    assert (await stored(live_call))[2:] == [(2, "assistant", said), (3, "assistant", fallback)]
    [error] = await model_errors(live_call)
    assert "ran past its 0.5 s cap" in error["error"]
