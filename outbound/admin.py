"""Endpoints (the secret shown once, when created or rotated) and the deliveries' record."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from outbound.models import WebhookDelivery, WebhookEndpoint
from outbound.services import deliveries_resend

SECRET_TEMPLATE = "admin/outbound/webhookendpoint/secret.html"
DELIVERY_FIELDS = (
    "event", "endpoint", "call", "status", "attempts", "last_status_code", "last_error",
    "response_text", "last_attempt_at", "next_attempt_at", "delivered_at", "created_at", "payload_json",
)  # fmt: skip


def _secret_page(
    request: HttpRequest, admin_site: admin.AdminSite, endpoints: list[WebhookEndpoint], *, title: str
) -> TemplateResponse:
    # Rendered, not redirected with a message: the secret never lands in a cookie or the session.
    context = {**admin_site.each_context(request), "title": title, "endpoints": endpoints}
    return TemplateResponse(request, SECRET_TEMPLATE, context)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "is_active", "secret_masked", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    fields = ["name", "url", "is_active", "secret_masked", "created_at"]
    readonly_fields = ["secret_masked", "created_at"]
    actions = ["rotate_secret"]

    @admin.display(description="Secret")
    def secret_masked(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.secret_masked or self.get_empty_value_display()

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        return _secret_page(request, self.admin_site, [obj], title=f"Webhook endpoint “{obj}” added")

    @admin.action(description="Rotate secret", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> HttpResponse:
        endpoints = list(queryset)
        for endpoint in endpoints:
            endpoint.secret_rotate()
        self.message_user(request, f"Rotated the secret of {len(endpoints)} endpoint(s).", messages.SUCCESS)
        return _secret_page(request, self.admin_site, endpoints, title="New webhook secrets")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "event",
        "endpoint",
        "call",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    ]
    list_filter = ["status", "endpoint", "event"]
    list_select_related = ["endpoint", "call"]
    list_per_page = 50
    search_fields = ["call__call_sid"]
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are made by events, never by a form

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False  # the record of what was sent is read-only

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbound.resend_webhookdelivery")

    @admin.action(description="Re-send", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = deliveries_resend(queryset)
        self.message_user(request, f"Re-sending {count} delivery(ies) now.", messages.SUCCESS)

    @admin.display(description="Last response")
    def response_text(self, delivery: WebhookDelivery) -> SafeString:
        return (
            format_html("<pre>{}</pre>", delivery.last_response)
            if delivery.last_response
            else SafeString("-")
        )

    @admin.display(description="Payload")
    def payload_json(self, delivery: WebhookDelivery) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2, ensure_ascii=False))
