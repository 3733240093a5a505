"""Erasure of one person's calls on request (GDPR art. 17): every call from or to their number is
deleted with its turns, not anonymised, because what identifies a caller is as much what they said
(names, addresses, account numbers in the turns) as the number itself, and no placeholder keeps
what the request asks to remove. What stays is an ErasureRecord: who erased, when, how much, and
the number only as a keyed digest and a masked form."""

from __future__ import annotations

import hashlib
import hmac
import re

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from agents.models import PhoneNumber
from calls.models import Call, ErasureRecord, Turn
from calls.privacy.masking import mask_number, mask_phone_numbers

_FORMATTING = re.compile(r"[\s().\-/]")
_NUMBER = re.compile(r"^\+?\d{6,15}$")


def number_normalise(raw: str) -> str:
    """A number as staff may type it ("+1 (415) 555-0198") as Twilio stores it ("+14155550198")."""
    number = _FORMATTING.sub("", raw)
    if number.startswith("00"):
        number = "+" + number[2:]  # the international prefix most of the world dials
    if not _NUMBER.match(number):
        raise ValidationError("Enter a phone number: digits, best with its country code (+14155550198).")
    return number


def number_digest(number: str) -> str:
    """Keyed, so the stored digest cannot be reversed by hashing every possible number."""
    return hmac.new(settings.SECRET_KEY.encode(), number.encode(), hashlib.sha256).hexdigest()


def _calls_of(number: str) -> Q:
    # Twilio sends E.164; a number stored without its "+" (a SIP or test call) is matched too.
    forms = {number, number.lstrip("+")}
    return Q(from_number__in=forms) | Q(to_number__in=forms)


def erasure_preview(number: str) -> tuple[int, int]:
    """How many calls and turns erasing `number` would delete."""
    calls = Call.objects.filter(_calls_of(number))
    return calls.count(), Turn.objects.filter(call__in=calls).count()


def number_erase(number: str, *, user: User) -> ErasureRecord:
    """Delete every call from or to `number` (a normalised one) and record that it was done.

    One of our own numbers is refused: it is on every inbound call, so "erasing" it would delete
    the whole call history, not one person's."""
    if PhoneNumber.objects.filter(number__in={number, "+" + number.lstrip("+")}).exists():
        raise ValidationError("This is one of our own numbers, not a caller's: nothing was erased.")
    with transaction.atomic():
        calls = Call.objects.filter(_calls_of(number))
        call_ids = list(calls.select_for_update().values_list("pk", flat=True))
        turns = Turn.objects.filter(call_id__in=call_ids).count()
        Call.objects.filter(pk__in=call_ids).delete()  # turns go with them (on_delete=CASCADE)
        masked = _log_entries_mask(number)
        return ErasureRecord.objects.create(
            erased_by=user,
            erased_by_username=user.get_username(),
            number_masked=mask_number(number),
            number_digest=number_digest(number),
            calls_deleted=len(call_ids),
            turns_deleted=turns,
            log_entries_masked=masked,
        )


def _log_entries_mask(number: str) -> int:
    """The admin history names a deleted call by its str(), which holds both numbers: masked."""
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Call), object_repr__contains=number.lstrip("+")
    )
    changed = []
    for entry in entries:
        text = mask_phone_numbers(entry.object_repr)
        for form in (number, number.lstrip("+")):  # short numbers the pattern leaves alone
            text = text.replace(form, mask_number(form))
        entry.object_repr = text
        changed.append(entry)
    LogEntry.objects.bulk_update(changed, ["object_repr"])
    return len(changed)
