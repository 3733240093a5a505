from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from calls.models import Call, CallQuerySet, ErasureRecord
from calls.privacy.erasure import erasure_preview, number_erase, number_normalise
from calls.privacy.masking import mask_number
from calls.summaries.requests import summary_rerun

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _TurnCount(TypedDict):
    turn_count: int


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
            {"fields": ["started_at", "ended_at", "duration", "created_at", "updated_at", "anonymised_at"]},
        ),
        ("Relay session", {"fields": ["session_id", "metadata_json"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["transcript", "summary_card", "duration", "metadata_json", "created_at", "updated_at"]
    actions = ["rerun_summary"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        calls = super().get_queryset(request)
        assert isinstance(calls, CallQuerySet)  # the default manager's
        return calls.with_turn_count()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # calls come from Twilio, never from a form

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False  # the record of a call is read-only

    @admin.display(description="Turns", ordering="turn_count")
    def turn_count(self, call: WithAnnotations[Call, _TurnCount]) -> int:
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


class ErasureForm(forms.Form):
    number = forms.CharField(
        max_length=40, help_text="As the caller gives it, best with the country code: +1 415 555 0198."
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_number(self) -> str:
        return number_normalise(self.cleaned_data["number"])


@admin.register(ErasureRecord)
class ErasureRecordAdmin(admin.ModelAdmin):
    """The audit trail of erasures, read-only, and the page that erases a number's calls."""

    list_display = ["created_at", "number_masked", "erased_by_username", "calls_deleted", "turns_deleted"]
    list_filter = ["created_at"]
    search_fields = ["number_masked", "erased_by_username"]
    fields = readonly_fields = (
        "created_at",
        "number_masked",
        "number_digest",
        "erased_by_username",
        "calls_deleted",
        "turns_deleted",
        "log_entries_masked",
    )
    change_list_template = "admin/calls/erasurerecord/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # records are made by the erase page only

    def has_change_permission(self, request: HttpRequest, obj: ErasureRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ErasureRecord | None = None) -> bool:
        return False  # an audit trail nobody can trim

    def get_urls(self) -> list[URLPattern]:
        erase = path("erase/", self.admin_site.admin_view(self.erase_view), name="calls_erasurerecord_erase")
        return [erase, *super().get_urls()]

    def erase_view(self, request: HttpRequest) -> HttpResponse:
        """Enter a number, see how many calls it has, confirm: they are deleted, and recorded."""
        user = request.user
        if not user.is_authenticated or not user.has_perm("calls.erase_number"):
            raise PermissionDenied
        form = ErasureForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Erase a phone number",
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            number = form.cleaned_data["number"]
            if not form.cleaned_data["confirm"]:
                calls, turns = erasure_preview(number)
                context.update(masked=mask_number(number), number=number, calls=calls, turns=turns)
                return TemplateResponse(request, "admin/calls/erasurerecord/erase.html", context)
            try:
                record = number_erase(number, user=user)
            except ValidationError as exc:
                form.add_error("number", exc)
            else:
                self.log_addition(request, record, [{"added": {}}])
                self.message_user(
                    request,
                    f"Erased {record.number_masked}: {record.calls_deleted} call(s) and "
                    f"{record.turns_deleted} turn(s) deleted.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:calls_erasurerecord_change", args=[record.pk]))
        return TemplateResponse(request, "admin/calls/erasurerecord/erase.html", context)
