"""Websocket routes: the ConversationRelay socket."""

from __future__ import annotations

from django.urls import path

from calls.relay.consumer import RelayConsumer

websocket_urlpatterns = [
    path("ws/relay/", RelayConsumer.as_asgi()),
]
