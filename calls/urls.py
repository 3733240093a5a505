"""Twilio's webhooks, at the root: the paths configured in the Twilio console and in our TwiML."""

from __future__ import annotations

from django.urls import path

from calls import views

urlpatterns = [
    path("twilio/voice/", views.voice, name="twilio-voice"),
    path("twilio/status/", views.twilio_status, name="twilio-status"),
    path("twilio/relay-action/", views.twilio_relay_action, name="twilio-relay-action"),
    path("twilio/stream-action/", views.twilio_stream_action, name="twilio-stream-action"),
    path("twilio/dial-action/", views.twilio_dial_action, name="twilio-dial-action"),
]
