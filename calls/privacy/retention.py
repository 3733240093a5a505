"""The retention policy: calls older than CALL_RETENTION_DAYS are deleted (with their turns) or
anonymised (CALL_RETENTION_MODE), in batches so a first run over years of calls neither holds
long locks nor one huge transaction. Run daily by Celery beat, or `manage.py apply_retention`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from calls.models import Call, Turn
from calls.privacy.anonymisation import calls_anonymise

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


class RetentionMode(models.TextChoices):
    DELETE = "delete", "Delete old calls"
    ANONYMISE = "anonymise", "Anonymise old calls"


@dataclass(frozen=True)
class RetentionResult:
    mode: str
    cutoff: datetime | None  # None: the policy keeps calls forever
    calls: int = 0
    turns: int = 0
    dry_run: bool = False


def calls_past_retention(cutoff: datetime, mode: str) -> models.QuerySet[Call]:
    """The calls the policy still has to handle. By creation time, whatever their status: a call
    stuck "in progress" for days (its end never reported) holds personal data all the same."""
    calls = Call.objects.filter(created_at__lt=cutoff)
    if mode == RetentionMode.ANONYMISE:
        calls = calls.filter(anonymised_at__isnull=True)
    return calls.order_by("pk")


def retention_apply(
    *,
    days: int | None = None,
    mode: str | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> RetentionResult:
    """Apply the policy (the settings', unless given); idempotent: a second run finds nothing."""
    days = settings.CALL_RETENTION_DAYS if days is None else days
    mode = RetentionMode(settings.CALL_RETENTION_MODE if mode is None else mode)
    if days <= 0:
        return RetentionResult(mode=mode, cutoff=None, dry_run=dry_run)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    pending = calls_past_retention(cutoff, mode)
    if dry_run:
        turns = Turn.objects.filter(call__in=pending).count()
        return RetentionResult(mode=mode, cutoff=cutoff, calls=pending.count(), turns=turns, dry_run=True)
    calls = turns = 0
    # Each batch is its own transaction: an interrupted run keeps what it did, the next goes on.
    while ids := list(pending.values_list("pk", flat=True)[:batch_size]):
        done_calls, done_turns = _batch(ids, mode)
        calls, turns = calls + done_calls, turns + done_turns
    if calls:
        verb = "deleted" if mode == RetentionMode.DELETE else "anonymised"
        logger.info("retention: %s %s calls (%s turns) older than %s days", verb, calls, turns, days)
    return RetentionResult(mode=mode, cutoff=cutoff, calls=calls, turns=turns)


def _batch(ids: list[int], mode: str) -> tuple[int, int]:
    if mode == RetentionMode.ANONYMISE:
        return calls_anonymise(ids)
    with transaction.atomic():
        _, deleted = Call.objects.filter(pk__in=ids).delete()
    return deleted.get(Call._meta.label, 0), deleted.get(Turn._meta.label, 0)
