"""Malformed frames on many sockets: a bounded number of WARNING lines, and a true count."""

from __future__ import annotations

import logging
import re

import pytest
from channels.testing import WebsocketCommunicator

from calls.frames import FrameError
from calls.socket import REFUSALS_LOGGED, TwilioSocketConsumer, refusals

SOCKETS = 4
BAD_FRAMES_EACH = 50


class EchoConsumer(TwilioSocketConsumer):
    """Refuses anything but "ping", which it answers with its own refused count: once the answer
    is in, every frame sent before it has been handled (one await per frame, in order)."""

    label = "echo"

    def parse(self, raw: str | bytes | None) -> object:
        if raw != "ping":
            raise FrameError(f"not a ping but {raw!r}")
        return raw

    async def dispatch_frame(self, frame: object) -> None:
        await self.send(text_data=f"pong {self.refused}")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clock() -> Clock:
    """The time the refusals throttle of this event loop reads, moved by the test."""
    clock = Clock()
    throttle = refusals("echo")
    throttle.clock, throttle.window_start = clock, clock()
    return clock


@pytest.fixture
async def open_socket(sign_handshake):
    opened = []

    async def open_one() -> WebsocketCommunicator:
        signature = sign_handshake("wss://switchboard.example.com/ws/echo/")
        ws = WebsocketCommunicator(
            EchoConsumer.as_asgi(), "/ws/echo/", headers=[(b"x-twilio-signature", signature.encode())]
        )
        connected, _ = await ws.connect()
        assert connected
        opened.append(ws)
        return ws

    yield open_one
    for ws in opened:
        await ws.disconnect()


def warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "calls.socket" and r.levelno == logging.WARNING
    ]


async def test_a_flood_on_many_sockets_writes_a_few_lines_and_one_count(open_socket, clock, caplog):
    sockets = [await open_socket() for _ in range(SOCKETS)]
    for n in range(BAD_FRAMES_EACH):
        for i, ws in enumerate(sockets):
            await ws.send_to(text_data=f"bad {i}.{n}")
    for ws in sockets:
        await ws.send_to(text_data="ping")
        assert await ws.receive_from() == f"pong {BAD_FRAMES_EACH}"  # each socket's own count
    written = warnings(caplog)
    # The first few, whichever socket's they were, with their reason; the others held back.
    assert len(written) == REFUSALS_LOGGED
    assert all(
        re.fullmatch(r"echo frame ignored \(\d+ so far on this socket\): not a ping but 'bad \d\.\d+'", line)
        for line in written
    ), written

    clock.now += 60
    await sockets[0].send_to(text_data="bad again")
    await sockets[0].send_to(text_data="ping")
    assert await sockets[0].receive_from() == f"pong {BAD_FRAMES_EACH + 1}"
    total = SOCKETS * BAD_FRAMES_EACH
    assert warnings(caplog)[len(written) :] == [
        f"echo: {total} malformed frames ignored in the last 60 s on {SOCKETS} sockets ({REFUSALS_LOGGED} logged)",
        f"echo frame ignored ({BAD_FRAMES_EACH + 1} so far on this socket): not a ping but 'bad again'",
    ]
