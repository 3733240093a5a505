"""Calls and their turns: the transcript as spoken, and as the model will see it next time."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Count, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from agents.models import Persona
from calls.transcript import ToolCallLine, tool_call_lines
from voiceproject.models import TimestampedModel


class CallQuerySet(models.QuerySet["Call"]):
    def with_turn_count(self) -> CallQuerySet:
        # A subquery, not a join: joins added later (admin transcript search) can't inflate it.
        counts = (
            Turn.objects.filter(call=OuterRef("pk"))
            .order_by()
            .values("call")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return self.annotate(turn_count=Coalesce(Subquery(counts), Value(0)))

    def ended(self) -> CallQuerySet:
        return self.filter(status__in=Call.Status.terminal())


class Call(TimestampedModel):
    """One phone call, keyed by Twilio's CallSid."""

    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        BUSY = "busy", "Busy"
        NO_ANSWER = "no_answer", "No answer"
        CANCELED = "canceled", "Canceled"

        @classmethod
        def terminal(cls) -> list[str]:
            return [cls.COMPLETED, cls.FAILED, cls.BUSY, cls.NO_ANSWER, cls.CANCELED]

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND_API = "outbound-api", "Outbound (API)"
        OUTBOUND_DIAL = "outbound-dial", "Outbound (dial)"

    class SummaryStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Outcome(models.TextChoices):
        RESOLVED = "resolved", "Resolved"
        FOLLOW_UP_NEEDED = "follow_up_needed", "Follow-up needed"
        TRANSFERRED = "transferred", "Transferred"
        ABANDONED = "abandoned", "Abandoned"

    call_sid = models.CharField("call SID", max_length=64, unique=True)
    session_id = models.CharField("relay session", max_length=64, blank=True)
    persona = models.ForeignKey(Persona, on_delete=models.PROTECT, related_name="calls")
    from_number = models.CharField("from", max_length=32, blank=True)
    to_number = models.CharField("to", max_length=32, blank=True)
    direction = models.CharField(max_length=20, choices=Direction, default=Direction.INBOUND)
    status = models.CharField(max_length=20, choices=Status, default=Status.RINGING)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    summary = models.TextField(blank=True)
    summary_status = models.CharField(max_length=10, choices=SummaryStatus, default=SummaryStatus.PENDING)
    # Set once, by a conditional UPDATE, when the first end signal asks for the summary: the
    # database, not the process, guarantees one summary per call however many signals arrive.
    summary_requested_at = models.DateTimeField(null=True, blank=True)
    summary_data = models.JSONField(
        default=dict,
        blank=True,
        help_text="The structured summary: intent, outcome, action items, sentiment.",
    )
    # A copy of summary_data["outcome"] in its own column, so the admin can filter on it cheaply.
    summary_outcome = models.CharField(max_length=20, choices=Outcome, blank=True, db_index=True)
    summary_error = models.TextField(blank=True, help_text="Why the last summary attempt failed.")
    metadata = models.JSONField(
        default=dict, blank=True, help_text="Custom parameters, errors and handoff data."
    )
    # Set when the retention policy stripped the call of personal data (calls.privacy): the
    # counts and timings stay for reports, and the next run passes it by.
    anonymised_at = models.DateTimeField(null=True, blank=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # "Calls of a persona, newest first" (admin filter, persona pages).
            models.Index(fields=["persona", "-created_at"], name="calls_call_persona_recent"),
            # The summaries sweep's scan, every few seconds: only calls whose summary is pending.
            models.Index(
                fields=["updated_at"],
                condition=Q(summary_status__in=["queued", "running"]),
                name="calls_call_summary_waiting",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True)
                | Q(started_at__isnull=True)
                | Q(ended_at__gte=models.F("started_at")),
                name="calls_call_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_number or 'unknown'} → {self.to_number or 'unknown'} ({self.call_sid})"

    @property
    def is_over(self) -> bool:
        return self.status in Call.Status.terminal()


class TurnQuerySet(models.QuerySet["Turn"]):
    def in_order(self) -> TurnQuerySet:
        return self.order_by("sequence")


class Turn(models.Model):
    """One utterance. `text` is what the model sees next time; for an assistant turn the caller
    cut off, that is only the part they heard, while `generated_text` keeps everything sent."""

    class Role(models.TextChoices):
        USER = "user", "Caller"
        ASSISTANT = "assistant", "Agent"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role)
    text = models.TextField(blank=True)
    generated_text = models.TextField(blank=True)
    interrupted = models.BooleanField(default=False)
    heard_confidence = models.FloatField(null=True, blank=True)
    tool_calls = models.JSONField(
        default=list,
        blank=True,
        help_text="Tools the model asked for in this turn: name, arguments, result, executed or not.",
    )
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    completed_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TurnQuerySet.as_manager()

    class Meta:
        ordering = ["call", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["call", "sequence"], name="calls_turn_unique_sequence"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.get_role_display()}: {self.text[:60]}"

    @property
    def unheard_text(self) -> str:
        """What was generated and sent but never reached the caller's ear."""
        if not self.interrupted or not self.generated_text.startswith(self.text):
            return ""
        return self.generated_text[len(self.text) :]

    @property
    def tool_call_lines(self) -> list[ToolCallLine]:
        """The tools the model asked for in this turn, worded for the transcript."""
        return tool_call_lines(self.tool_calls)


class ErasureRecord(models.Model):
    """Proof that one phone number's calls were erased, without the number: who asked, when, and
    how much went. The digest lets a later request be checked against it ("did we erase this
    number?"); the masked form lets a person recognise it."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    erased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    # Kept as text too: the record outlives the staff account that made it.
    erased_by_username = models.CharField("erased by (username)", max_length=150)
    number_masked = models.CharField("number", max_length=32, help_text="e.g. +1******0198")
    number_digest = models.CharField(
        max_length=64, db_index=True, help_text="HMAC-SHA256 of the number, keyed by SECRET_KEY."
    )
    calls_deleted = models.PositiveIntegerField(default=0)
    turns_deleted = models.PositiveIntegerField(default=0)
    log_entries_masked = models.PositiveIntegerField(
        default=0, help_text="Admin history entries that named the number, now masked."
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [("erase_number", "Can erase every call of a phone number")]

    def __str__(self) -> str:
        return f"Erasure of {self.number_masked} ({self.calls_deleted} calls)"
