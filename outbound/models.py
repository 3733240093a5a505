"""Webhook endpoints staff register, and each delivery of an event to one of them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from calls.models import Call
from outbound.signing import SECRET_PREFIX, secret_mask, secret_new
from outbound.validation import webhook_url_validate


class WebhookEndpoint(models.Model):
    name = models.CharField(max_length=100)
    url = models.URLField("URL", max_length=500, validators=[webhook_url_validate])
    # Kept in clear: the server signs with it. Shown in full only when created or rotated.
    secret = models.CharField(max_length=100, default=secret_new, editable=False)
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(secret__startswith=SECRET_PREFIX), name="outbound_endpoint_secret_prefixed"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def secret_masked(self) -> str:
        return secret_mask(self.secret)

    def secret_rotate(self) -> str:
        """A new secret, saved at once; the old one stops verifying with the next delivery."""
        self.secret = secret_new()
        self.save(update_fields=["secret"])
        return self.secret


class WebhookDelivery(models.Model):
    """One event for one endpoint, and how its attempts went. Deleted with its call (erasure,
    retention): the payload holds the transcript and the caller's number."""

    class Event(models.TextChoices):
        CALL_SUMMARIZED = "call.summarized", "Call summarized"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=40, choices=Event)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True, help_text="The first 2 KB of the last response's body.")
    last_error = models.TextField(blank=True, help_text="Why the last attempt failed.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        # Deliveries are a read-only record; sending one again is a permission of its own.
        permissions = [("resend_webhookdelivery", "Can re-send webhook deliveries")]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="outbound_delivery_endpoint"),
            # The sweep's question: pending deliveries by when they are due.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="outbound_delivery_due"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed"]), name="outbound_delivery_status"
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(delivered_at__isnull=False),
                name="outbound_delivery_succeeded_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} to {self.endpoint}"
