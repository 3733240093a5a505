"""Twilio's HTTP webhooks, at the root: the paths are what is configured in Twilio's console."""

from __future__ import annotations

from django.urls import path

from calls import views

urlpatterns = [
    path("twilio/voice/", views.voice, name="twilio-voice"),
]
