"""`GET /health/`: is each configured dependency reachable? For load balancers and compose."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("health: database unreachable: %s", exc)
        return {"ok": False, "error": str(exc).strip().splitlines()[0] if str(exc) else repr(exc)}
    return {"ok": True, "vendor": connection.vendor}


def check_redis(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        logger.warning("health: redis unreachable: %s", exc)
        return {"ok": False, "error": str(exc)}
    finally:
        client.close()
    return {"ok": True}


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database()}
    if settings.REDIS_URL:
        checks["redis"] = check_redis(settings.REDIS_URL)
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
