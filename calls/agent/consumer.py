"""The agent socket (/ws/agent/): authenticates an agent process by its API key at the handshake,
then only turns frames into calls on the process's AgentHub (calls/agent/hub.py) and the hub's
notices into frames. It shares the Twilio sockets' frame loop (calls/socket.py): one await per
frame, no channel layer, malformed frames counted and dropped, never answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from django.utils import timezone

from agents.models import AgentKey
from calls.agent.hub import Agent, agent_hub
from calls.agent.wire import PROTOCOL_VERSION, HistoryGet, ReplyEnd, ReplyWrite, dumps, parse_frame
from calls.socket import TwilioSocketConsumer
from calls.store.db import drain_task, in_db_thread

logger = logging.getLogger(__name__)

_touches: set[asyncio.Task[None]] = set()  # last_used_at updates in flight, kept from the collector


def bearer_key(headers: list[tuple[bytes, bytes]]) -> str:
    """The key of an `Authorization: Bearer <key>` header, or ""."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, key = value.decode("latin-1").strip().partition(" ")
            return key.strip() if scheme.lower() == "bearer" else ""
    return ""


class AgentConsumer(TwilioSocketConsumer):
    label = "agent"
    agent: Agent | None = None

    async def connect(self) -> None:
        key = bearer_key(list(self.scope.get("headers") or []))
        agent_key = await in_db_thread(AgentKey.objects.authenticate, key) if key else None
        if agent_key is None:
            logger.warning("agent socket refused: %s API key", "unknown or revoked" if key else "no")
            await self.close(code=4403)  # before accept(): the handshake is refused (HTTP 403)
            return
        await self.accept()
        self.agent = agent_hub().connect(self, agent_key.name, agent_key.pk)
        _touch(agent_key.pk)
        await self.send_frame(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "agent_id": self.agent.agent_id,
                "key_name": agent_key.name,
            }
        )

    def parse(self, raw: str | bytes | None) -> object:
        return parse_frame(raw)

    async def dispatch_frame(self, frame: object) -> None:
        agent = self.agent
        if agent is None:
            return
        hub = agent_hub()
        match frame:
            case ReplyWrite():
                hub.write(agent, frame)
            case ReplyEnd():
                hub.end(agent, frame)
            case HistoryGet():
                await self.send_frame(hub.history(agent, frame))

    async def send_frame(self, frame: Mapping[str, object]) -> None:
        await self.send(text_data=dumps(frame))

    async def disconnect(self, code: int) -> None:
        self.gone = True
        if self.agent is not None:
            agent_hub().disconnect(self.agent)


def _touch(pk: int) -> None:
    """Stamp the key's last use in the background: the handshake does not wait for the write."""

    async def touch() -> None:
        try:
            await in_db_thread(AgentKey.objects.filter(pk=pk).update, last_used_at=timezone.now())
        except Exception as exc:  # the database is away: the stamp is only informative
            logger.warning("agent key %s: last use not recorded: %s", pk, exc)

    task = drain_task(touch(), name="agent-key-touch")
    _touches.add(task)
    task.add_done_callback(_touches.discard)
