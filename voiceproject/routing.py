"""Websocket routes: the ConversationRelay socket."""

from __future__ import annotations

from django.urls import path

from calls.consumers import RelayConsumer

websocket_urlpatterns = [
    path("ws/relay/", RelayConsumer.as_asgi()),
]
