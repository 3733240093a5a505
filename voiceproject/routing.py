"""Websocket routes: the ConversationRelay and Media Streams sockets."""

from __future__ import annotations

from django.urls import path

from calls.media.consumer import MediaStreamConsumer
from calls.relay.consumer import RelayConsumer

websocket_urlpatterns = [
    path("ws/relay/", RelayConsumer.as_asgi()),
    path("ws/media/", MediaStreamConsumer.as_asgi()),
]
