"""The relay's database thread survives its connection being dropped under it (a PostgreSQL
restart, an idle timeout): the work is retried once on a new connection."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from agents.models import Persona
from calls.store.db import Batched, in_db_thread
from calls.tests.conftest import backend_pid

pytestmark = pytest.mark.django_db(transaction=True)


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


REQUEST = contextvars.ContextVar("request", default="none")


async def test_a_batched_hop_runs_in_a_context_of_its_own_not_its_first_callers():
    # Django runs each HTTP request with a thread of its own for sync work, held in a context
    # variable: a hop run in the first caller's context would go to that request's thread, which
    # ends with the request while later batches still need one.
    seen: list[str] = []

    def apply(requests: list[int]) -> list[int]:
        seen.append(REQUEST.get())
        return requests

    batched = Batched(apply, name="test")
    REQUEST.set("the first request")
    assert await asyncio.gather(batched(1), batched(2)) == [1, 2]
    assert seen == ["none"]
