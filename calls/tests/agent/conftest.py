"""An agent process's side of the agent socket, against the real ASGI app, next to the relay
sockets of the root conftest: a test plays both the caller and the customer's agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from channels.testing import WebsocketCommunicator

from agents.models import AgentKey, Persona
from calls.models import Call, Turn

CALL_SID = "CA" + "a" * 32
GREETING = "Hello, how can I help?"


class AgentClient:
    """Plays an agent process on /ws/agent/."""

    def __init__(self, communicator: WebsocketCommunicator, hello: dict) -> None:
        self.ws = communicator
        self.hello = hello
        self.closed = False

    async def receive(self, timeout: float = 5) -> dict:
        return await self.ws.receive_json_from(timeout)

    async def expect(self, kind: str, timeout: float = 5) -> dict:
        frame = await self.receive(timeout)
        assert frame["type"] == kind, frame
        return frame

    async def write(self, turn_id: str, *texts: str) -> None:
        for text in texts:
            await self.ws.send_json_to({"type": "reply.write", "turn_id": turn_id, "text": text})

    async def end(self, turn_id: str) -> None:
        await self.ws.send_json_to({"type": "reply.end", "turn_id": turn_id})

    async def history(self, call_sid: str, request_id: str = "r1") -> dict:
        """history.get, answered; frames are handled in order, so everything sent before is done."""
        await self.ws.send_json_to({"type": "history.get", "request_id": request_id, "call_sid": call_sid})
        frame = await self.receive()
        assert frame["type"] in ("history", "error") and frame["request_id"] == request_id, frame
        return frame

    async def disconnect(self) -> None:
        self.closed = True
        await self.ws.disconnect()


@pytest.fixture
def agent_key(transactional_db) -> str:
    _, key = AgentKey.objects.issue("langchain-test")
    return key


@pytest.fixture
async def agent_socket(agent_key) -> AsyncIterator[Callable[..., Awaitable[AgentClient | None]]]:
    """Open agent sockets (with the test key unless told otherwise); None when refused."""
    from voiceproject.asgi import application

    opened: list[AgentClient] = []

    async def open_agent(key: str | None = agent_key, *, header: bytes | None = None) -> AgentClient | None:
        headers = []
        if header is not None:
            headers.append((b"authorization", header))
        elif key is not None:
            headers.append((b"authorization", f"Bearer {key}".encode()))
        communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
        connected, _ = await communicator.connect()
        if not connected:
            return None
        client = AgentClient(communicator, await communicator.receive_json_from(5))
        opened.append(client)
        return client

    yield open_agent
    for client in opened:
        if not client.closed:
            await client.disconnect()


@pytest.fixture
def agent_persona(default_persona) -> Persona:
    default_persona.llm_provider = Persona.LlmProvider.AGENT
    default_persona.welcome_greeting = GREETING
    default_persona.save()
    return default_persona


@pytest.fixture
def live_call(agent_persona) -> Call:
    """A call the voice webhook answered for the client-side persona: the greeting is turn 0."""
    call = Call.objects.create(
        call_sid=CALL_SID, persona=agent_persona, from_number="+14155550198", to_number="+14155550100"
    )
    Turn.objects.create(
        call=call, sequence=0, role=Turn.Role.ASSISTANT, text=GREETING, generated_text=GREETING
    )
    return call
