"""A real Celery worker process on the real Redis broker and the pytest database.

One worker serves the whole session, on the session's own queue (other test runs may share the
Redis server), talking to a long-lived fake Anthropic server that each test resets. Tests that
take a broker or a worker down start their own (`private_broker`, `worker_start`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from aiohttp import web
from celery.signals import after_task_publish
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from kombu import pools as kombu_pools

from calls.store.db import in_db_thread
from calls.store.lifecycle import calls_ended
from calls.summaries import requests as summary_requests
from fakes.anthropic_server import FakeAnthropic, FakeReply
from voiceproject.celery import app as celery_app

WORKER_START_SECONDS = 30.0
# The application_name of the workers' database connections: a test can find and kill them.
WORKER_DATABASE_APP = "switchboard-test-worker"


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


class HoldingAnthropic(FakeAnthropic):
    """The fake Anthropic API, able to keep its next answers waiting (`hold_next`) until
    `release()`: a summary in flight, for as long as a test needs to kill its worker or its
    database connection. Held requests are recorded like any other."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to_hold = 0
        self.held = 0
        self._released: asyncio.Event | None = None  # on the server's loop

    def hold_next(self, count: int = 1) -> None:
        with self._lock:
            self.to_hold = count

    def wait_holding(self, count: int = 1, timeout: float = 15.0) -> None:
        """Until `count` requests are being held."""
        with self._request_seen:
            if not self._request_seen.wait_for(lambda: self.held >= count, timeout):
                raise TimeoutError(f"the fake Anthropic server holds {self.held} of {count} requests")

    def release(self) -> None:
        if self._loop is not None and self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def reset(self, *, default: FakeReply | None = None) -> None:
        self.release()
        super().reset(default=default)
        with self._lock:
            self.to_hold = self.held = 0
            self._released = None

    def before_stop(self) -> None:
        self.release()

    async def respond(self, request: web.Request) -> web.StreamResponse:
        response = await super().respond(request)
        with self._request_seen:
            hold = self.to_hold > 0
            if hold:
                self.to_hold -= 1
                self.held += 1
                if self._released is None:
                    self._released = asyncio.Event()
                released = self._released
                self._request_seen.notify_all()
        if hold:
            await released.wait()  # or the client hangs up (its worker was killed)
        return response


@dataclass
class Worker:
    process: subprocess.Popen
    hostname: str
    queue: str
    log: Path
    anthropic: HoldingAnthropic
    published: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool's children at once (its own process group): nothing
        acknowledges, nothing hands back."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()  # warm shutdown
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def _test_database_url() -> str:
    # Inside the session, NAME is already the test database's (test_…): point the worker at it.
    name = settings.DATABASES["default"]["NAME"]
    url = urlsplit(os.environ["DATABASE_URL"])._replace(
        path=f"/{name}", query=f"application_name={WORKER_DATABASE_APP}"
    )
    return url.geturl()


def worker_start(
    *,
    queue: str,
    log: Path,
    anthropic: HoldingAnthropic,
    pool: str = "solo",
    env: dict[str, str] | None = None,
) -> Worker:
    """A `celery worker` subprocess consuming `queue` on the test database, its model the fake;
    returned once it answers a ping (on the broker `celery_app` uses, which `env` must match)."""
    hostname = f"{queue}-{uuid.uuid4().hex[:6]}@localhost"
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "ANTHROPIC_API_KEY": "test-anthropic-key",
        "ANTHROPIC_BASE_URL": anthropic.url,
        "SUMMARY_RETRY_BASE_SECONDS": "0.02",
        "DJANGO_SETTINGS_MODULE": "voiceproject.settings",
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "voiceproject", "worker", f"--pool={pool}", "-Q", queue,
        "-n", hostname, "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
    ]  # fmt: skip
    if pool == "prefork":
        command.append("--concurrency=1")
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process=process, hostname=hostname, queue=queue, log=log, anthropic=anthropic)

    def answers_ping() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{worker.log_text()}")
        return bool(celery_app.control.ping(destination=[hostname], timeout=0.5, limit=1))

    try:
        wait_until(answers_ping, timeout=WORKER_START_SECONDS, interval=0.2)
    except BaseException:
        worker.stop()
        raise
    return worker


def _test_database_worker_ready() -> None:
    if not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the worker tests need REDIS_URL and a PostgreSQL DATABASE_URL")


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, celery_test_queue, tmp_path_factory) -> Iterator[Worker]:
    _test_database_worker_ready()
    fake = HoldingAnthropic().start()
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    try:
        worker = worker_start(queue=celery_test_queue, log=log, anthropic=fake)
        yield worker
        worker.stop()
    finally:
        fake.stop()


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, to stop and start again (the shared one stays up)."""

    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout=10)

    def stop(self) -> None:
        """Gone at once, as a crash or a restart without persistence: its messages too."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _use_broker(url: str) -> None:
    # Celery has no public way to move a running app to another broker: its private connection
    # pools (not in its stubs) are dropped, and rebuilt from broker_url on the next publish.
    # kombu also keeps every pool in a registry by connection: a pool closed here would be
    # handed back for the same URL later, so the registry is reset too.
    app: Any = celery_app
    app.conf.broker_url = url
    kombu_pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def private_broker(django_db_setup) -> Iterator[PrivateRedis]:
    """A private Redis, which this process publishes to (and `worker_start` workers must use,
    env={"REDIS_URL": private_broker.url})."""
    _test_database_worker_ready()
    broker = PrivateRedis(port=_free_port())
    broker.start()
    previous = celery_app.conf.broker_url
    _use_broker(broker.url)
    try:
        yield broker
    finally:
        _use_broker(previous)
        summary_requests.held_forget()  # held for the private broker: not the next test's
        broker.stop()


@pytest.fixture
def celery_worker(celery_worker_process: Worker) -> Iterator[Worker]:
    """The session's worker, with a fresh fake Anthropic and a record of the tasks published."""
    worker = celery_worker_process
    worker.anthropic.reset()
    with published_tasks() as worker.published:
        yield worker


@contextmanager
def published_tasks() -> Iterator[list[str]]:
    """The names of the tasks this process publishes meanwhile."""
    published: list[str] = []

    def record(sender: str | None = None, **kwargs: Any) -> None:
        published.append(sender or "")

    after_task_publish.connect(record, weak=False)
    try:
        yield published
    finally:
        after_task_publish.disconnect(record)


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """The embedded run: Celery executes tasks in-process, on the embedded lane's thread (stopped
    after the test, so its sweep can't touch the next test's calls)."""
    celery_app.conf.task_always_eager = True
    yield
    summary_requests._embedded.stop()
    celery_app.conf.task_always_eager = False


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
