"""The server refuses a websocket frame over the app's own limit (calls/frames.py) itself, as the
Dockerfile runs it: uvicorn's default would buffer 16 MiB of it first."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from calls.frames import MAX_FRAME_CHARS

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    command = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert command is not None, "the Dockerfile has no CMD line"
    return json.loads(command.group(1))


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


async def echo(scope, receive, send) -> None:
    """The smallest websocket app: echoes text frames (the Django app would need a database)."""
    assert scope["type"] == "websocket"
    while (message := await receive())["type"] != "websocket.disconnect":
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})


@pytest.fixture
def server_url():
    """uvicorn with the Dockerfile's websocket options, on a socket that is listening before it
    starts (connections wait in the backlog: no polling for readiness)."""
    command = dockerfile_command()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "voiceproject.tests.test_ws_max_size:echo",
        "--fd",
        str(listener.fileno()),
    ]
    args += [
        "--ws",
        option(command, "--ws"),
        "--ws-max-size",
        option(command, "--ws-max-size"),
        "--lifespan",
        "off",
    ]
    server = subprocess.Popen(args, cwd=ROOT, pass_fds=[listener.fileno()], stderr=subprocess.DEVNULL)
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    server.terminate()
    server.wait(10)
    listener.close()


def test_the_dockerfile_runs_uvicorn_with_the_apps_frame_limit():
    assert int(option(dockerfile_command(), "--ws-max-size")) == MAX_FRAME_CHARS


def test_a_frame_at_the_limit_passes_and_one_over_it_is_refused_by_the_server(server_url):
    with connect(server_url, open_timeout=30, max_size=None) as ws:
        ws.send("x" * MAX_FRAME_CHARS)
        assert len(ws.recv(timeout=10)) == MAX_FRAME_CHARS
        ws.send("x" * (MAX_FRAME_CHARS + 1))
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009  # message too big: uvicorn refused it, the app never saw it
