from __future__ import annotations

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError

from agents.models import PhoneNumber
from calls.models import Call, ErasureRecord, Turn
from calls.privacy.erasure import erasure_preview, number_digest, number_erase, number_normalise

pytestmark = pytest.mark.django_db

CALLER = "+14155550198"


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("dpo", is_staff=True)


@pytest.mark.parametrize("raw", ["+1 (415) 555-0198", " +1.415.555.0198 ", "0014155550198", "+14155550198"])
def test_a_number_is_taken_as_staff_type_it(raw):
    assert number_normalise(raw) == CALLER


@pytest.mark.parametrize("raw", ["", "call me", "+1 415", "CA0123456789"])
def test_what_is_not_a_number_is_refused(raw):
    with pytest.raises(ValidationError):
        number_normalise(raw)


def test_every_call_from_or_to_the_number_goes_with_its_turns_and_a_record_stays(make_call, staff):
    make_call("CAfrom", turns=3, from_number=CALLER)
    make_call("CAto", turns=2, from_number="+14155550100", to_number=CALLER, direction="outbound-api")
    other = make_call("CAother", turns=4, from_number="+14155550111")
    assert erasure_preview(CALLER) == (2, 5)

    record = number_erase(CALLER, user=staff)

    assert list(Call.objects.values_list("call_sid", flat=True)) == ["CAother"]
    assert set(Turn.objects.values_list("call_id", flat=True)) == {other.pk}
    assert (record.calls_deleted, record.turns_deleted, record.erased_by, record.erased_by_username) == (
        2, 5, staff, "dpo"
    )  # fmt: skip
    assert record.number_masked == "+1******0198" and record.number_digest == number_digest(CALLER)
    stored = list(ErasureRecord.objects.values().get().values())
    assert not any("4155550198" in str(value) for value in stored)


def test_admin_history_that_names_the_number_is_masked(make_call, staff):
    call = make_call("CAgone", from_number=CALLER)
    entry = LogEntry.objects.create(
        user=staff,
        content_type=ContentType.objects.get_for_model(Call),
        object_id=str(call.pk),
        object_repr=str(call),
        action_flag=DELETION,
    )
    call.delete()  # deleted in the admin earlier: only the history still has the number

    assert number_erase(CALLER, user=staff).log_entries_masked == 1
    entry.refresh_from_db()
    assert entry.object_repr == "+1******0198 → +1******0100 (CAgone)"


def test_one_of_our_own_numbers_is_refused(make_call, staff, default_persona):
    PhoneNumber.objects.create(number="+14155550100", persona=default_persona)
    make_call("CAinbound", to_number="+14155550100")
    with pytest.raises(ValidationError, match="one of our own numbers"):
        number_erase("+14155550100", user=staff)
    assert Call.objects.count() == 1 and not ErasureRecord.objects.exists()


def test_a_number_without_calls_still_leaves_a_record(staff):
    record = number_erase("+447911123456", user=staff)
    assert (record.calls_deleted, record.turns_deleted, record.number_masked) == (0, 0, "+44******3456")
