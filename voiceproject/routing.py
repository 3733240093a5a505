"""Websocket routes: the ConversationRelay and Media Streams sockets, and the agent socket."""

from __future__ import annotations

from django.urls import path

from calls.agent.consumer import AgentConsumer
from calls.media.consumer import MediaStreamConsumer
from calls.relay.consumer import RelayConsumer

# django-stubs types path() for views only, not the ASGI applications channels routes with it.
websocket_urlpatterns = [
    path("ws/relay/", RelayConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/media/", MediaStreamConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/agent/", AgentConsumer.as_asgi()),  # type: ignore[arg-type]
]
