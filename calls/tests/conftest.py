"""A real Celery worker process on the real Redis broker and the pytest database.

One worker serves the whole session, on the session's own queue (other test runs may share the
Redis server), talking to a long-lived fake Anthropic server that each test resets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery.signals import after_task_publish
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.store.db import in_db_thread
from calls.store.lifecycle import calls_ended
from fakes.anthropic_server import FakeAnthropic
from voiceproject.celery import app as celery_app

WORKER_START_SECONDS = 30.0


def statements(queries: list[dict]) -> list[str]:
    """The kind of each captured query: "UPDATE", or "UPDATE x3" for one executemany of 3 rows."""
    kinds = []
    for query in queries:
        times, _, rest = query["sql"].partition(" times: ")
        kinds.append(f"{rest.split()[0]} x{times}" if rest else query["sql"].split()[0])
    return kinds


def wait_until(predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate` returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if result := predicate():
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout} s")
        time.sleep(interval)


@dataclass
class Worker:
    process: subprocess.Popen
    hostname: str
    queue: str
    log: Path
    anthropic: FakeAnthropic
    published: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _test_database_url() -> str:
    # Inside the session, NAME is already the test database's (test_…): point the worker at it.
    name = settings.DATABASES["default"]["NAME"]
    return urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, celery_test_queue, tmp_path_factory) -> Iterator[Worker]:
    if not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the worker tests need REDIS_URL and a PostgreSQL DATABASE_URL")
    fake = FakeAnthropic().start()
    queue = celery_test_queue
    hostname = f"{queue}@localhost"
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "ANTHROPIC_API_KEY": "test-anthropic-key",
        "ANTHROPIC_BASE_URL": fake.url,
        "SUMMARY_RETRY_BASE_SECONDS": "0.02",
        "DJANGO_SETTINGS_MODULE": "voiceproject.settings",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "voiceproject", "worker", "--pool=solo", "-Q", queue,
        "-n", hostname, "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    worker = Worker(process=process, hostname=hostname, queue=queue, log=log, anthropic=fake)
    try:

        def answers_ping() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited:\n{worker.log_text()}")
            return bool(celery_app.control.ping(destination=[hostname], timeout=0.5, limit=1))

        wait_until(answers_ping, timeout=WORKER_START_SECONDS, interval=0.2)
        yield worker
    finally:
        process.terminate()  # warm shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        fake.stop()


@pytest.fixture
def celery_worker(celery_worker_process: Worker) -> Iterator[Worker]:
    """The session's worker, with a fresh fake Anthropic and a record of the tasks published."""
    worker = celery_worker_process
    worker.anthropic.reset()
    worker.published = []

    def record(sender: str | None = None, **kwargs: Any) -> None:
        worker.published.append(sender or "")

    after_task_publish.connect(record, weak=False)
    yield worker
    after_task_publish.disconnect(record)


@pytest.fixture
def database_refuses_one_call():
    """The call CArefused0001, refused by the database (a trigger): a batch's one INSERT or UPDATE
    fails for every call in it."""
    with connection.cursor() as cursor:
        cursor.execute(
            """CREATE FUNCTION refuse_call() RETURNS trigger AS $$ BEGIN
                 IF NEW.call_sid = 'CArefused0001' THEN RAISE EXCEPTION 'refused'; END IF;
                 RETURN NEW; END $$ LANGUAGE plpgsql;
               CREATE TRIGGER refuse_call BEFORE INSERT OR UPDATE ON calls_call
                 FOR EACH ROW EXECUTE FUNCTION refuse_call();"""
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse_call ON calls_call; DROP FUNCTION refuse_call();")


async def db_thread_queries[T](work: Awaitable[T]) -> tuple[T, list[dict]]:
    """`work`'s result, and the queries the database thread (where batches run) made meanwhile."""
    capture = await in_db_thread(lambda: CaptureQueriesContext(connection).__enter__())
    try:
        result = await work
    finally:
        await in_db_thread(capture.__exit__, None, None, None)
    return result, await in_db_thread(lambda: capture.captured_queries)


def call_ended(*, call_id: int, source: str) -> bool:
    """The end of one call, as the recorder reports a socket's (calls_ended); True when first."""
    return call_id in calls_ended([call_id], source=source)


def backend_pid() -> int:
    """The PostgreSQL backend serving this thread's connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]
