"""Real Switchboard server processes for tests: uvicorn with the Dockerfile's flags, on free
loopback ports, on the pytest database and Redis, as production runs several behind a balancer.

Tests use the `server_processes` fixture (registered by the root conftest):

    servers = server_processes(2, ANTHROPIC_BASE_URL=fake.url)   # started in parallel, ready
    servers[0].url, servers[1].ws_url("/ws/relay/"), servers[1].log_text()

They must be transactional (`@pytest.mark.django_db(transaction=True)`): the processes see
committed rows only. Each signs webhooks with SERVER_TWILIO_TOKEN against its own address
(PUBLIC_BASE_URL), so calls/simulator/relay.py can dial it as Twilio does.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.relay_load import child_env, free_ports, stop, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
SERVER_TWILIO_TOKEN = "test-server-twilio-token"
READY_SECONDS = 60.0  # two cold Django imports on a busy 2-core machine take a few seconds


@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        """Its base URL, also its PUBLIC_BASE_URL: what webhooks are signed against."""
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def dockerfile_command(host: str, port: int) -> list[str]:
    """The Dockerfile's CMD (uvicorn and its flags), bound to `host`:`port`: tests run the server
    as production does, and follow the Dockerfile when it changes."""
    text = (ROOT / "Dockerfile").read_text()
    cmd = text[text.rindex("\nCMD ") + len("\nCMD ") :].replace("\\\n", " ")
    command = json.loads(cmd[: cmd.index("]") + 1])
    command[command.index("--host") + 1] = host
    command[command.index("--port") + 1] = str(port)
    # The venv's uvicorn, whatever is on PATH.
    return [sys.executable, "-m", command[0], *command[1:]]


def start_servers(count: int, env: dict[str, str], log_dir: Path) -> list[ServerProcess]:
    """`count` processes started together, each ready (GET /health/ answers 200); all stopped
    again if any fails to start."""
    servers = []
    for n, port in enumerate(free_ports(count)):
        log = log_dir / f"server-{n}.log"
        server_env = child_env(**env, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
        with log.open("wb") as out:
            process = subprocess.Popen(
                dockerfile_command("127.0.0.1", port), cwd=ROOT, env=server_env, stdout=out, stderr=out
            )
        servers.append(ServerProcess(process, port, log))
    try:
        with ThreadPoolExecutor(count) as pool:
            waits = [
                pool.submit(wait_until_ready, f"{s.url}/health/", s.process, READY_SECONDS) for s in servers
            ]
            for server, wait in zip(servers, waits, strict=True):
                try:
                    wait.result()
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}; its log:\n{server.log_text()}") from exc
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: list[ServerProcess]) -> None:
    for server in servers:
        if server.process.poll() is None:
            stop(server.process)


def database_url_for_tests() -> str:
    """DATABASE_URL with the pytest database's name (test_…) in place of the configured one."""
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    return urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}").geturl()


@pytest.fixture
def server_processes(transactional_db, tmp_path) -> Iterator[Callable[..., list[ServerProcess]]]:
    """`server_processes(count, **env)`: that many server processes, ready, sharing the test
    database and Redis; `env` adds to or overrides their environment. Stopped after the test."""
    from django.conf import settings

    if not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("server processes need REDIS_URL and a PostgreSQL DATABASE_URL")
    started: list[ServerProcess] = []

    def start(count: int, **env: str) -> list[ServerProcess]:
        base = {
            "DATABASE_URL": database_url_for_tests(),
            "REDIS_URL": settings.REDIS_URL,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),  # a server refuses weak keys with DEBUG off
            "TWILIO_AUTH_TOKEN": SERVER_TWILIO_TOKEN,
            "LOG_LEVEL": "INFO",
        }
        servers = start_servers(count, base | env, tmp_path)
        started.extend(servers)
        return servers

    yield start
    stop_servers(started)
