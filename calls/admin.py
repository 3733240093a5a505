from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString

from calls.models import Call
from calls.summaries.requests import summary_rerun


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "from_number",
        "to_number",
        "persona",
        "status",
        "duration",
        "turn_count",
        "summary_status",
        "summary_outcome",
    ]
    list_display_links = ["created_at", "from_number"]
    list_filter = ["persona", "status", "created_at", "summary_status", "summary_outcome", "direction"]
    date_hierarchy = "created_at"
    search_fields = ["call_sid", "from_number", "to_number", "turns__text"]
    search_help_text = "Search by call SID, phone number or words said in the call."
    list_select_related = ["persona"]
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["call_sid", "persona", "from_number", "to_number", "direction", "status"]}),
        ("Transcript", {"fields": ["transcript"]}),
        ("Summary", {"fields": ["summary_card", "summary_status", "summary_error", "summary_requested_at"]}),
        (
            "Timing",
            {"fields": ["started_at", "ended_at", "duration", "created_at", "updated_at"]},
        ),
        ("Relay session", {"fields": ["session_id", "metadata_json"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["transcript", "summary_card", "duration", "metadata_json", "created_at", "updated_at"]
    actions = ["rerun_summary"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        return super().get_queryset(request).with_turn_count()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # calls come from Twilio, never from a form

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False  # the record of a call is read-only

    @admin.display(description="Turns", ordering="turn_count")
    def turn_count(self, call: Call) -> int:
        return call.turn_count

    @admin.display(description="Duration", ordering="duration_seconds")
    def duration(self, call: Call) -> str:
        if call.duration_seconds is None:
            return self.get_empty_value_display()
        minutes, seconds = divmod(call.duration_seconds, 60)
        return f"{minutes}:{seconds:02d}"

    @admin.display(description="Conversation")
    def transcript(self, call: Call) -> SafeString:
        return render_to_string("admin/calls/transcript.html", {"turns": call.turns.in_order()})

    @admin.display(description="Summary")
    def summary_card(self, call: Call) -> SafeString:
        return render_to_string(
            "admin/calls/summary_card.html", {"call": call, "data": call.summary_data or {}}
        )

    @admin.action(description="Re-run summary", permissions=["view"])
    def rerun_summary(self, request: HttpRequest, queryset: QuerySet[Call]) -> None:
        # Staff who may read a call may ask for its summary again: it changes no record of the call.
        ids = list(queryset.values_list("pk", flat=True))
        enqueued = summary_rerun(ids)
        self.message_user(request, f"Re-running the summary of {enqueued} call(s).", messages.SUCCESS)
        if skipped := len(ids) - enqueued:
            self.message_user(
                request,
                f"Skipped {skipped} call(s) still in progress: summarised when they end.",
                messages.WARNING,
            )

    @admin.display(description="Metadata")
    def metadata_json(self, call: Call) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(call.metadata, indent=2, sort_keys=True))
