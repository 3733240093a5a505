"""The end of a call, whichever signal reports it first (socket closed, callbacks)."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from calls.models import Call

logger = logging.getLogger(__name__)


@transaction.atomic
def call_ended(*, call_id: int, source: str, status: str = Call.Status.COMPLETED) -> bool:
    """Mark the call ended unless something already did; True when this signal was first."""
    call = Call.objects.select_for_update().get(pk=call_id)
    if call.ended_at is not None or call.is_over:
        return False
    call.ended_at = timezone.now()
    call.status = status
    if call.started_at and call.duration_seconds is None:
        call.duration_seconds = int((call.ended_at - call.started_at).total_seconds())
    call.save(update_fields=["ended_at", "status", "duration_seconds", "updated_at"])
    logger.info("call %s ended (%s)", call.call_sid, source)
    return True


acall_ended = sync_to_async(call_ended)
