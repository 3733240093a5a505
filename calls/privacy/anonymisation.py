"""A call stripped of personal data, its shape kept: status, direction, timings, turn count and
roles, outcome. Reports and latency figures still add up; nobody can be recognised in it."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from calls.models import Call, Turn

TURN_PLACEHOLDER = "[removed]"
# Metadata that describes the call's handling, not the caller: everything else goes (custom
# parameters the caller's TwiML passed, handoff reasons and transfer numbers, error texts that
# may quote what was said).
METADATA_KEPT = frozenset({"ended_by", "language", "reconnects", "status_sequence"})
CALL_FIELDS_CLEARED = ["from_number", "to_number", "summary", "summary_data", "summary_error", "metadata"]


def metadata_scrub(metadata: dict) -> dict:
    """The operational part of a call's metadata; error entries keep only when and where."""
    kept = {key: value for key, value in metadata.items() if key in METADATA_KEPT}
    if isinstance(errors := metadata.get("errors"), list):
        kept["errors"] = [
            {k: v for k, v in error.items() if k in ("at", "source", "code")}
            for error in errors
            if isinstance(error, dict)
        ]
    return kept


def calls_anonymise(call_ids: Sequence[int]) -> tuple[int, int]:
    """Anonymise these calls (those not already anonymised); returns (calls, turns) changed."""
    now = timezone.now()
    with transaction.atomic():
        calls = list(
            Call.objects.select_for_update()
            .filter(pk__in=call_ids, anonymised_at__isnull=True)
            .only("pk", "metadata")
        )
        for call in calls:
            call.from_number = call.to_number = call.summary = call.summary_error = ""
            call.summary_data = {}
            call.metadata = metadata_scrub(call.metadata)
            call.anonymised_at = call.updated_at = now
        Call.objects.bulk_update(calls, [*CALL_FIELDS_CLEARED, "anonymised_at", "updated_at"])
        turns = Turn.objects.filter(call_id__in=[call.pk for call in calls]).update(
            text=TURN_PLACEHOLDER, generated_text="", tool_calls=[]
        )
    return len(calls), turns
