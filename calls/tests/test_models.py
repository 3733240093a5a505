from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from calls.demo import demo_call_create
from calls.models import Call, Turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(default_persona) -> Call:
    return Call.objects.create(call_sid="CA" + "1" * 32, persona=default_persona, from_number="+14155550100")


def test_turn_sequence_is_unique_per_call(call, default_persona):
    Turn.objects.create(call=call, sequence=0, role=Turn.Role.ASSISTANT, text="Hello")
    other = Call.objects.create(call_sid="CA" + "2" * 32, persona=default_persona)
    Turn.objects.create(call=other, sequence=0, role=Turn.Role.ASSISTANT, text="Hello")  # fine elsewhere
    with pytest.raises(IntegrityError), transaction.atomic():
        Turn.objects.create(call=call, sequence=0, role=Turn.Role.USER, text="Hi")


def test_call_sid_is_unique(call):
    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.create(call_sid=call.call_sid, persona=call.persona)


def test_unheard_text_is_the_generated_remainder_of_an_interrupted_turn(call):
    turn = Turn(
        call=call,
        sequence=1,
        role=Turn.Role.ASSISTANT,
        text="We open at nine",
        generated_text="We open at nine and close at five.",
        interrupted=True,
    )
    assert turn.unheard_text == " and close at five."
    turn.interrupted = False
    assert turn.unheard_text == ""


def test_turn_count_is_not_inflated_by_joins_on_turns(call):
    for n, word in enumerate(["apple", "apple pie", "banana"]):
        Turn.objects.create(call=call, sequence=n, role=Turn.Role.USER, text=word)
    counted = Call.objects.with_turn_count().filter(turns__text__icontains="apple").distinct()
    assert [c.turn_count for c in counted] == [3]


def test_only_calls_in_a_terminal_status_count_as_ended(call, default_persona):
    ended = Call.objects.create(call_sid="CA" + "3" * 32, persona=default_persona, status=Call.Status.BUSY)
    assert list(Call.objects.ended()) == [ended]
    assert ended.is_over and not call.is_over


def test_the_demo_call_is_created_once_with_an_interrupted_turn():
    call, created = demo_call_create()
    again, created_again = demo_call_create()
    assert created and not created_again and again.pk == call.pk
    interrupted = call.turns.get(interrupted=True)
    assert interrupted.role == Turn.Role.ASSISTANT
    assert interrupted.generated_text.startswith(interrupted.text)
    assert interrupted.unheard_text.strip()
    assert list(call.turns.in_order().values_list("sequence", flat=True)) == list(range(call.turns.count()))
