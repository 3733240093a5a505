"""The relay's way to the database: one hop to Django's database thread per batch of work.

Async ORM calls each hop to asgiref's single database thread, and under load every hop waits for
the GIL behind the event loop. So a live call sends whole units of work (its setup, a batch of
turn writes) in one hop. That thread keeps its connection between hops (it serves no requests
that would close it); when the connection has gone stale, the work is retried once on a new one.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection


def reconnecting[**P, R](fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    try:
        return fn(*args, **kwargs)
    except (InterfaceError, OperationalError):
        if connection.in_atomic_block:
            raise
        connection.close()  # a dropped connection (server restart, idle timeout): one retry
        return fn(*args, **kwargs)


async def in_db_thread[**P, R](fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    return await sync_to_async(reconnecting)(fn, *args, **kwargs)
