"""ASGI entry point: HTTP through Django, websockets through Channels' router."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")

# Load the app registry before importing anything that touches models.
django_asgi_app = get_asgi_application()

from voiceproject.secret_key import refuse_to_serve_with_a_weak_key  # noqa: E402

refuse_to_serve_with_a_weak_key()  # before a server accepts anything signed with it

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from voiceproject.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # channels' stubs want their own pattern type, which path() (django-stubs) never returns.
        "websocket": URLRouter(websocket_urlpatterns),  # type: ignore[arg-type]
    }
)

# Move everything loaded so far (Django, the apps, the libraries: about 240,000 objects) out of the
# garbage collector's sight. They live as long as the process, yet each full collection walked them
# all: at 500 live calls one took 100 ms, and every call waited for it (bench/relay_load.py).
gc.collect()  # what loading left as garbage goes first: frozen, it would never be freed
gc.freeze()
