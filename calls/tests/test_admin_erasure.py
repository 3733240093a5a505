from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from calls.models import Call, ErasureRecord, Turn
from calls.tests.privacy.conftest import make_call  # noqa: F401 (calls from, to and not the caller)

pytestmark = pytest.mark.django_db

CALLER = "+14155550198"
ERASE = reverse("admin:calls_erasurerecord_erase")


def staff_client(client, *codenames: str, username: str = "dpo"):
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def eraser(client):
    """Staff with the erasure permission, who may also read the erasure records."""
    return staff_client(client, "erase_number", "view_erasurerecord")


@pytest.fixture
def calls(make_call) -> None:  # noqa: F811
    make_call("CAfirst", turns=3, from_number=CALLER)
    make_call("CAsecond", turns=2, from_number=CALLER)
    make_call("CAother", turns=4, from_number="+14155550111")


def test_entering_a_number_shows_what_would_go_and_deletes_nothing(eraser, calls):
    response = eraser.post(ERASE, {"number": "+1 415 555 0198"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>2</strong> call(s), <strong>5</strong> turn(s)" in html and "+1******0198" in html
    assert Call.objects.count() == 3 and not ErasureRecord.objects.exists()


def test_confirming_erases_the_numbers_calls_and_records_it(eraser, calls):
    response = eraser.post(ERASE, {"number": "+1 415 555 0198", "confirm": "on"})

    record = ErasureRecord.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:calls_erasurerecord_change", args=[record.pk])
    assert list(Call.objects.values_list("call_sid", flat=True)) == ["CAother"]
    assert Turn.objects.count() == 4
    assert (record.calls_deleted, record.turns_deleted, record.erased_by_username) == (2, 5, "dpo")
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id, entry.object_repr) == (
        ADDITION, str(record.pk), "Erasure of +1******0198 (2 calls)"
    )  # fmt: skip

    page = eraser.get(response.url).content.decode()
    assert "+1******0198" in page and "4155550198" not in page
    assert 'name="_save"' not in page  # the record is read-only


@pytest.mark.parametrize("codenames", [(), ("view_erasurerecord", "view_call", "delete_call")])
def test_staff_without_the_erasure_permission_get_403(client, calls, codenames):
    forbidden = staff_client(client, *codenames)
    assert forbidden.get(ERASE).status_code == 403
    assert forbidden.post(ERASE, {"number": CALLER, "confirm": "on"}).status_code == 403
    assert Call.objects.count() == 3 and not ErasureRecord.objects.exists()


def test_our_own_number_is_refused_with_the_reason(eraser, make_call, default_persona):  # noqa: F811
    default_persona.phone_numbers.create(number="+14155550100")
    make_call("CAinbound", to_number="+14155550100")
    html = eraser.post(ERASE, {"number": "+14155550100", "confirm": "on"}).content.decode()
    assert "one of our own numbers" in html
    assert Call.objects.count() == 1 and not ErasureRecord.objects.exists()


def test_the_records_list_links_to_the_erase_page_only_for_those_who_may_erase(eraser):
    changelist = reverse("admin:calls_erasurerecord_changelist")
    assert f'href="{ERASE}"' in eraser.get(changelist).content.decode()
    reader = staff_client(Client(), "view_erasurerecord", username="auditor")
    assert ERASE not in reader.get(changelist).content.decode()


def test_records_can_be_neither_added_nor_deleted(eraser, calls):
    eraser.post(ERASE, {"number": CALLER, "confirm": "on"})
    record = ErasureRecord.objects.get()
    assert eraser.get(reverse("admin:calls_erasurerecord_add")).status_code == 403
    assert eraser.get(reverse("admin:calls_erasurerecord_delete", args=[record.pk])).status_code == 403
