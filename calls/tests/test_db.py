"""The relay's database thread survives its connection being dropped under it (a PostgreSQL
restart, an idle timeout): the work is retried once on a new connection."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from agents.models import Persona
from calls.db import in_db_thread

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(pid: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        connection.close()  # this helper thread's own connection


async def test_work_is_retried_on_a_new_connection_after_the_old_one_dropped(default_persona):
    dropped = await in_db_thread(backend_pid)
    await sync_to_async(terminate, thread_sensitive=False)(dropped)  # from another connection

    assert await in_db_thread(Persona.objects.count) >= 1
    assert await in_db_thread(backend_pid) != dropped
