"""WSGI entry point, for management tooling only: calls need the ASGI app (asgi.py)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")

application = get_wsgi_application()

from voiceproject.secret_key import refuse_to_serve_with_a_weak_key  # noqa: E402

refuse_to_serve_with_a_weak_key()
