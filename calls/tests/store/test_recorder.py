"""Live calls' writes are applied in batches shared by the calls: in order for each call, the
turns in one INSERT, and never at the cost of another call's turns."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from calls.models import Call, Turn
from calls.store.db import in_db_thread
from calls.store.recorder import CallRecorder, apply_batch
from calls.tests.conftest import db_thread_queries, statements

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_calls(default_persona) -> tuple[Call, Call]:
    return (
        Call.objects.create(call_sid="CArecorder0001", persona=default_persona),
        Call.objects.create(call_sid="CArecorder0002", persona=default_persona),
    )


def stored(call: Call) -> list[tuple]:
    return list(
        Turn.objects.filter(call=call)
        .in_order()
        .values_list("sequence", "role", "text", "generated_text", "interrupted", "heard_confidence")
    )


async def test_two_calls_turns_and_a_truncation_go_in_one_insert(two_calls, settings):
    settings.RELAY_WRITE_BATCH_SECONDS = 0.05  # both calls write within one window
    first, second = two_calls
    a, b = CallRecorder(first), CallRecorder(second)
    a.create_turn(sequence=0, role="user", text="Hello?")
    b.create_turn(sequence=0, role="user", text="Are you open?")
    a.create_turn(sequence=1, role="assistant", text="Hi there, how", generated_text="Hi there, how")
    a.update_turn(1, text="Hi there", interrupted=True, heard_confidence=0.9)  # the caller talked over it
    b.create_turn(sequence=1, role="assistant", text="Yes.", generated_text="Yes.")

    # The queries of the database thread, where the batches run.
    _, captured = await db_thread_queries(close_both(a, b))

    inserts = [q["sql"] for q in captured if q["sql"].startswith('INSERT INTO "calls_turn"')]
    assert len(inserts) == 1, captured
    assert not [q for q in captured if q["sql"].startswith("UPDATE")]
    assert await sync_to_async(stored)(first) == [
        (0, "user", "Hello?", "", False, None),
        (1, "assistant", "Hi there", "Hi there, how", True, 0.9),
    ]
    assert await sync_to_async(stored)(second) == [
        (0, "user", "Are you open?", "", False, None),
        (1, "assistant", "Yes.", "Yes.", False, None),
    ]


async def test_a_turn_that_cannot_be_stored_costs_the_other_call_nothing(two_calls, caplog):
    first, second = two_calls
    await sync_to_async(Turn.objects.create)(call=first, sequence=0, role="assistant", text="Greeting")
    a, b = CallRecorder(first), CallRecorder(second)
    a.create_turn(sequence=0, role="user", text="clashes with the greeting's sequence")
    a.create_turn(sequence=1, role="user", text="Hello?")
    b.create_turn(sequence=0, role="user", text="Are you open?")
    await a.close()
    await b.close()

    assert [t[2] for t in await sync_to_async(stored)(first)] == ["Greeting", "Hello?"]
    assert [t[2] for t in await sync_to_async(stored)(second)] == ["Are you open?"]
    assert "inserting 3 turns at once failed" in caplog.text
    assert "a database write failed" in caplog.text


async def test_writes_run_in_the_order_queued_and_close_waits_for_them(two_calls):
    first, _ = two_calls
    recorder = CallRecorder(first)
    seen: list[int] = []
    recorder.create_turn(sequence=0, role="user", text="Hello?")
    # A write queued after a turn sees it, as call_ended sees the call's last turns.
    recorder.then(lambda: seen.append(Turn.objects.filter(call=first).count()))
    recorder.update_turn(0, text="Hello, anyone?")
    recorder.note("errors", {"source": "relay", "description": "boom"})
    await recorder.close()

    assert seen == [1]
    assert [t[2] for t in await sync_to_async(stored)(first)] == ["Hello, anyone?"]
    await first.arefresh_from_db()
    assert [e["description"] for e in first.metadata["errors"]] == ["boom"]

    recorder.create_turn(sequence=1, role="user", text="after the end")  # refused, logged
    await recorder.close()
    assert len(await sync_to_async(stored)(first)) == 1


async def test_an_update_of_a_turn_written_earlier_is_an_update(two_calls):
    first, _ = two_calls
    await sync_to_async(Turn.objects.create)(
        call=first, sequence=0, role="assistant", text="It is ten.", generated_text="It is ten."
    )
    _, queries = await db_thread_queries(in_db_thread(apply_batch, []))
    assert queries == []  # nothing to do, nothing done
    recorder = CallRecorder(first)
    recorder.update_turn(0, text="It is", interrupted=True)
    await recorder.close()
    assert await sync_to_async(stored)(first) == [(0, "assistant", "It is", "It is ten.", True, None)]


async def test_calls_ending_together_end_in_one_transaction_after_their_turns(two_calls, settings):
    settings.RELAY_WRITE_BATCH_SECONDS = 0.05
    first, second = two_calls
    await Call.objects.filter(pk=second.pk).aupdate(
        status=Call.Status.NO_ANSWER, ended_at=timezone.now(), metadata={"ended_by": "status-callback"}
    )
    a, b = CallRecorder(first), CallRecorder(second)
    a.create_turn(sequence=0, role="user", text="Bye.")
    a.end_call("socket")
    b.end_call("socket")
    _, queries = await db_thread_queries(close_both(a, b))
    captured = statements(queries)

    assert captured == ["INSERT", "BEGIN", "SELECT", "UPDATE x1", "UPDATE", "COMMIT"]
    await first.arefresh_from_db()
    await second.arefresh_from_db()
    assert (first.status, first.metadata["ended_by"]) == (Call.Status.COMPLETED, "socket")
    assert first.ended_at is not None
    # An end Twilio reported first stands; both summaries are asked for, once.
    assert (second.status, second.metadata["ended_by"]) == (Call.Status.NO_ANSWER, "status-callback")
    assert [first.summary_status, second.summary_status] == [Call.SummaryStatus.QUEUED] * 2
    assert first.summary_requested_at is not None and second.summary_requested_at is not None


async def close_both(a: CallRecorder, b: CallRecorder) -> None:
    await a.close()
    await b.close()


async def test_writes_wait_out_a_database_outage_in_order(two_calls, database_outage, caplog):
    first, second = two_calls
    a, b = CallRecorder(first), CallRecorder(second)
    a.create_turn(sequence=0, role="user", text="Hello?")
    assert await a.applied(timeout=10)

    database_outage.cut()  # PostgreSQL restarts: connections dropped, new ones refused
    a.create_turn(sequence=1, role="assistant", text="Hi there, how", generated_text="Hi there, how")
    a.update_turn(1, text="Hi there", interrupted=True)
    a.create_turn(sequence=2, role="user", text="Are you there?")
    a.note("errors", {"source": "relay", "description": "during the outage"})
    b.create_turn(sequence=0, role="user", text="Are you open?")
    a.end_call("socket")
    closing = asyncio.create_task(a.close())
    await wait_for_condition(lambda: database_outage.refused >= 2)  # tried, and tried again
    assert not closing.done()
    assert "database unreachable" in caplog.text

    database_outage.restore()
    await asyncio.wait_for(closing, 10)
    await b.close()

    assert await sync_to_async(stored)(first) == [
        (0, "user", "Hello?", "", False, None),
        (1, "assistant", "Hi there", "Hi there, how", True, None),
        (2, "user", "Are you there?", "", False, None),
    ]
    assert [t[2] for t in await sync_to_async(stored)(second)] == ["Are you open?"]
    await first.arefresh_from_db()
    assert [e["description"] for e in first.metadata["errors"]] == ["during the outage"]
    assert (first.status, first.summary_status) == (Call.Status.COMPLETED, Call.SummaryStatus.QUEUED)
    assert "database reachable again" in caplog.text
    assert "a database write failed" not in caplog.text


async def test_past_the_queue_limit_writes_are_dropped_loudly(two_calls, database_outage, settings, caplog):
    settings.RELAY_WRITE_QUEUE_LIMIT = 2
    first, _ = two_calls
    recorder = CallRecorder(first)
    database_outage.cut()
    for sequence in range(4):
        recorder.create_turn(sequence=sequence, role="user", text=f"turn {sequence}")
    assert "call writes queue full" in caplog.text
    database_outage.restore()
    await recorder.close(timeout=10)
    assert [t[0] for t in await sync_to_async(stored)(first)] == [0, 1]


async def wait_for_condition(predicate, timeout: float = 10.0) -> None:
    """Poll `predicate` until it holds, or fail: what it reads changes on another thread (the
    proxy's), which has no event for this loop to await."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
