"""Summaries through a broker outage and a killed worker, with the production defaults (issue 14).

Workload. A Redis of this run's own (127.0.0.1, a free port, no persistence) is the broker; a
Celery worker (prefork, concurrency 2) and ONE beat process run as docker-compose runs them, on
PostgreSQL (database switchboard_faults, created and migrated first), their model a fake
Anthropic API in this process answering each summary after --model-seconds. This process plays
the web server: calls end here, through the same code a socket's end runs, and the publisher
thread queues their summaries.

1. Redis outage: Redis is killed (its messages with it), --calls calls end evenly over --down
   seconds, Redis starts again. Reported: how long after its return the last summary was
   written, and the model requests per call (exactly one each is the rule).
2. Killed worker: --killed calls end with Redis up, and once the model holds their summaries the
   whole worker is SIGKILLed (its process group: the pool children too); a new worker starts
   --restart seconds later. Reported: how long after the new worker was up the last summary was
   written (target: within two minutes), and the requests per call (the killed attempts count).

Run (PostgreSQL on 127.0.0.1:5432, user postgres; redis-server on the PATH):
    .venv/bin/python -m bench.summary_faults --calls 60 --down 30
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "switchboard_faults"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def prepare(env: dict[str, str]) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        db.execute(f'CREATE DATABASE "{DATABASE}"')
    command = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=300)


def celery(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "voiceproject", *args, "--loglevel=INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its pool children
        )


def worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    process = celery(
        env, log, "worker", "--pool=prefork", "--concurrency=2", "-n", f"bench-{secrets.token_hex(3)}@%h"
    )
    from voiceproject.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the worker did not start; see {log}")
    return process


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def end_calls(count: int, over: float, first: int) -> list[int]:
    """`count` calls with a caller turn each, ended as a socket ends them, evenly over `over` s."""
    from agents.models import Persona
    from calls.models import Call, Turn
    from calls.store.lifecycle import calls_ended

    persona = Persona.objects.get(is_default=True)
    ids = []
    for n in range(first, first + count):
        call = Call.objects.create(call_sid=f"CA{n:032x}", persona=persona, status=Call.Status.IN_PROGRESS)
        Turn.objects.create(call=call, sequence=0, role=Turn.Role.USER, text=f"This is caller number {n}.")
        calls_ended([call.pk], source="socket")
        ids.append(call.pk)
        time.sleep(over / count)
    return ids


def until_done(ids: list[int], timeout: float) -> float:
    """Seconds until every call's summary is written (or the timeout)."""
    from calls.models import Call

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if Call.objects.filter(pk__in=ids, summary_status=Call.SummaryStatus.DONE).count() == len(ids):
            return time.monotonic() - started
        time.sleep(0.5)
    return float("inf")


def requests_per_call(fake, first: int, count: int) -> Counter[int]:
    asked = Counter(
        int(content.rsplit("caller number ", 1)[1].split(".")[0])
        for request in fake.requests
        if "caller number " in (content := str(request["messages"][0]["content"]))
    )
    return Counter(asked.get(n, 0) for n in range(first, first + count))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=60, help="calls ending during the Redis outage")
    parser.add_argument("--down", type=float, default=30.0, help="seconds Redis is down")
    parser.add_argument(
        "--killed", type=int, default=4, help="calls whose summary is in flight when the worker is killed"
    )
    parser.add_argument("--restart", type=float, default=10.0, help="seconds before a new worker starts")
    parser.add_argument("--model-seconds", type=float, default=1.0, help="the fake model's time to answer")
    args = parser.parse_args()

    broker = Broker()
    broker.start()
    from fakes.anthropic_server import FakeAnthropic, FakeReply

    summary = {
        "summary": "The caller asked about opening hours.",
        "caller_intent": "opening hours",
        "outcome": "resolved",
        "action_items": [],
        "sentiment": "neutral",
    }
    fake = FakeAnthropic(
        default=FakeReply(tool_use={"name": "record_call_summary", "input": summary}, ttft=args.model_seconds)
    ).start()
    env = {
        **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "REDIS_URL": broker.url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": fake.url,
        "DJANGO_SETTINGS_MODULE": "voiceproject.settings",
        "LOG_LEVEL": "WARNING",
    }
    prepare(env)
    os.environ.update(env)
    import django

    django.setup()
    from calls.summaries import requests as summary_requests

    logs = Path(tempfile.mkdtemp(prefix="summary-faults-"))
    workers = [worker(env, logs / "worker.log")]
    beat = celery(env, logs / "beat.log", "beat", "--schedule", str(logs / "beat-schedule"))
    results: list[str] = []
    try:
        # 1. Redis down while calls end.
        broker.kill()
        began = time.monotonic()
        ids = end_calls(args.calls, args.down, first=1)
        time.sleep(max(0.0, args.down - (time.monotonic() - began)))
        broker.start()
        back = until_done(ids, timeout=600)
        per_call = requests_per_call(fake, 1, args.calls)
        results.append(
            f"Redis down {time.monotonic() - began - back:.0f} s while {args.calls} calls ended: all summarised"
            f" {back:.1f} s after its return; model requests per call {dict(sorted(per_call.items()))}"
        )
        held = len(summary_requests._held)

        # 2. The whole worker killed with summaries in flight.
        fake.reset(default=FakeReply(tool_use={"name": "record_call_summary", "input": summary}, ttft=30.0))
        first = 1000
        ids = end_calls(args.killed, 0.0, first=first)
        deadline = time.monotonic() + 30
        while len(fake.requests) < min(2, args.killed) and time.monotonic() < deadline:
            time.sleep(0.1)
        kill_group(workers.pop())
        killed_at = time.monotonic()
        fake.reset(
            default=FakeReply(
                tool_use={"name": "record_call_summary", "input": summary}, ttft=args.model_seconds
            )
        )
        time.sleep(args.restart)
        workers.append(worker(env, logs / "worker.log"))
        up = time.monotonic()
        done = until_done(ids, timeout=600)
        results.append(
            f"worker SIGKILLed with {args.killed} summaries taken; a new one up {up - killed_at:.0f} s later:"
            f" all summarised {done:.1f} s after it was up; model requests per call after the kill"
            f" {dict(sorted(requests_per_call(fake, first, args.killed).items()))}"
        )
        results.append(f"summaries still held by the publisher at the end of part 1: {held}; logs in {logs}")
    finally:
        for process in [*workers, beat]:
            kill_group(process)
        broker.kill()
        fake.stop()
    print("\n".join(results))


if __name__ == "__main__":
    main()
