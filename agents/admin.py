from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.forms import Field as FormField
from django.forms import Textarea
from django.http import HttpRequest

from agents.models import AgentKey, Persona, PersonaLanguage, PersonaTool, PhoneNumber
from agents.services import persona_duplicate


class PhoneNumberInline(admin.TabularInline):
    model = PhoneNumber
    extra = 0
    fields = ["number", "label"]


class PersonaLanguageInline(admin.TabularInline):
    model = PersonaLanguage
    extra = 0
    fields = ["code", "voice", "tts_provider", "transcription_provider", "speech_model"]
    verbose_name = "language it may switch to"
    verbose_name_plural = "Other languages it may switch to"


class PersonaToolInline(admin.StackedInline):
    model = PersonaTool
    extra = 0
    fields = [
        ("name", "is_active"),
        "description",
        "parameters",
        ("method", "url"),
        ("timeout_seconds", "cancellable"),
        "auth_header_env",
    ]
    verbose_name_plural = "HTTP tools the model may call"


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "is_active",
        "is_default",
        "transport",
        "language",
        "llm_model",
        "updated_at",
    ]
    list_filter = ["is_active", "is_default", "transport", "language", "llm_provider"]
    search_fields = ["name", "slug", "system_prompt", "welcome_greeting"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    actions = ["duplicate", "make_default"]
    inlines = [PersonaLanguageInline, PhoneNumberInline, PersonaToolInline]
    formfield_overrides = {
        models.TextField: {"widget": Textarea(attrs={"rows": 4, "cols": 100})},
    }
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_active", "is_default", "transport"]}),
        (
            "What it says",
            {"fields": ["system_prompt", "welcome_greeting", "fallback_line"]},
        ),
        (
            "When the model stalls",
            {
                "fields": [("first_token_timeout_seconds", "token_gap_timeout_seconds")],
                "description": "A reply the model stops sending is cut off after these many seconds of "
                "silence and the fallback line is spoken (after what was already said, as its own "
                "sentence). Every reply is also capped at RELAY_REPLY_TIMEOUT_SECONDS in total.",
            },
        ),
        (
            "Voice and speech",
            {
                "fields": [
                    "language",
                    "voice",
                    "tts_provider",
                    "transcription_provider",
                    "interruptible",
                    "speech_chunking",
                    "allow_ssml",
                ]
            },
        ),
        (
            "Speech providers and turn detection (Media Streams)",
            {
                "fields": [
                    ("stt_provider", "stt_model"),
                    ("stt_base_url", "stt_api_key_env"),
                    ("stream_tts_provider", "stream_tts_model", "stream_voice"),
                    ("stream_tts_base_url", "stream_tts_api_key_env"),
                    ("vad_start_threshold", "vad_end_threshold"),
                    ("vad_min_speech_ms", "vad_silence_ms"),
                    ("vad_barge_in_threshold", "vad_barge_in_windows"),
                ],
                "description": "Used when the transport is Media Streams: Switchboard hears the caller with "
                "Silero VAD and the speech-to-text provider, and speaks with the text-to-speech provider.",
            },
        ),
        (
            "Call control",
            {
                "fields": [
                    "end_call_enabled",
                    "end_call_marker",
                    "transfer_enabled",
                    "handoff_number",
                    "dtmf_enabled",
                    "dtmf_pause_seconds",
                ]
            },
        ),
        (
            "HTTP tools",
            {
                "fields": [("tool_filler_line", "tool_filler_after_seconds")],
                "description": "The tools themselves are listed at the bottom of the page. While one runs "
                "and the agent is silent, the filler line is said after this many seconds.",
            },
        ),
        (
            "Silence and time limits",
            {
                "fields": [
                    "idle_timeout_seconds",
                    "idle_max_reprompts",
                    "idle_reprompt_line",
                    "idle_goodbye_line",
                    "max_call_seconds",
                    "max_call_line",
                ]
            },
        ),
        (
            "Model",
            {
                "fields": [
                    "llm_provider",
                    "llm_model",
                    "llm_base_url",
                    "llm_api_key_env",
                    "temperature",
                    "max_tokens",
                ]
            },
        ),
        ("After the call", {"fields": ["summary_prompt"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def formfield_for_dbfield(
        self, db_field: models.Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> FormField | None:
        # The system prompt is the persona: give it room.
        if db_field.name == "system_prompt":
            kwargs["widget"] = Textarea(attrs={"rows": 18, "cols": 100})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.action(description="Duplicate selected personas")
    def duplicate(self, request: HttpRequest, queryset: QuerySet[Persona]) -> None:
        copies = [persona_duplicate(persona=persona) for persona in queryset]
        self.message_user(request, f"Created {', '.join(c.name for c in copies)}.", messages.SUCCESS)

    @admin.action(description="Make default (answers unrouted numbers)")
    def make_default(self, request: HttpRequest, queryset: QuerySet[Persona]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one persona to make default.", messages.ERROR)
            return
        persona = queryset.get()
        Persona.objects.make_default(persona)
        self.message_user(request, f"{persona.name} now answers unrouted numbers.", messages.SUCCESS)


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["number", "label", "persona"]
    list_editable = ["label", "persona"]
    list_select_related = ["persona"]
    list_filter = ["persona"]
    search_fields = ["number", "label", "persona__name"]


@admin.register(AgentKey)
class AgentKeyAdmin(admin.ModelAdmin):
    """API keys of agent processes (the agent socket, sdk/PROTOCOL.md). A key is shown once, as it
    is created; only its hash is stored, so a lost key is revoked and replaced, never recovered."""

    list_display = ["name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    fields = ["name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: AgentKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key = obj.set_new_key()
        obj.created_by = request.user if request.user.is_authenticated else None
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"The key for {obj.name} is {key} — copy it now: it is shown only this once. "
            "Agents send it as “Authorization: Bearer <key>”.",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys (their agents are refused from now on)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AgentKey]) -> None:
        count = queryset.revoke()  # type: ignore[attr-defined]
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)
