"""Fixtures shared by every app's tests: personas, the fake provider servers (models, speech-to-
text, text-to-speech), replies to stream into, signed requests."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client
from twilio.request_validator import RequestValidator

from agents import directory
from agents.models import Persona
from agents.tts.cartesia import CartesiaTts
from agents.tts.together import TogetherTts
from calls.engine.reply import ReplyStream
from fakes.anthropic_server import FakeAnthropic
from fakes.openai_server import FakeOpenAI
from fakes.outage import OutageProxy
from fakes.realtime_stt_server import FakeDeepgram, FakeRealtimeStt
from fakes.realtime_tts_server import TEST_TIMEOUTS, TTS_TEST_KEY, FakeCartesiaTts, FakeTogetherTts
from voiceproject.celery import app as celery_app

TWILIO_TEST_TOKEN = "test-twilio-auth-token"

pytest_plugins = ["fakes.servers"]  # server_processes: real uvicorn processes on the test database


def pytest_configure(config: pytest.Config) -> None:
    """The test environment's SECRET_KEY is a throwaway, and the ASGI app the socket tests import
    refuses to serve with a weak key while DEBUG is off (voiceproject/secret_key.py): this run
    signs with a strong key of its own."""
    django_settings.SECRET_KEY = secrets.token_urlsafe(50)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_persona_directory():
    """Flushing a transactional test's tables sends no signals: start each test with an empty cache."""
    directory.reset()


@pytest.fixture(autouse=True)
def _close_async_orm_connections():
    """Async ORM calls run on asgiref's worker thread, which keeps its own connection open;
    close it after each test so the test database can be dropped at the end."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def celery_test_queue() -> Iterator[str]:
    """Tasks the tests enqueue (Celery is not eager when REDIS_URL is set) go to a queue of this
    run's own, deleted at the end: nothing piles up in Redis, and the worker fixture consumes
    exactly this run's tasks."""
    queue = f"switchboard-test-{uuid.uuid4().hex[:10]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    yield queue
    celery_app.conf.task_default_queue = previous
    if django_settings.REDIS_URL:
        with celery_app.connection_for_write() as connection:
            bound = celery_app.amqp.queues[queue].bind(connection.default_channel)
            bound.declare()  # teaches this channel the queue's bindings, so delete() removes them too
            bound.delete()


@pytest.fixture
def default_persona(db) -> Persona:
    """The default persona: the starter one, or a fresh one after a transactional flush."""
    persona = Persona.objects.filter(is_default=True).first()
    return persona or Persona.objects.create(
        name="Receptionist",
        slug="receptionist",
        is_default=True,
        system_prompt="You answer the phone for a small business.",
        welcome_greeting="Hello, how can I help?",
    )


@pytest.fixture
def other_persona(db) -> Persona:
    return Persona.objects.create(
        name="Support",
        slug="support-test",
        system_prompt="You help callers fix their internet.",
        welcome_greeting="Support here.",
    )


@pytest.fixture
def fake_anthropic(settings) -> Iterator[FakeAnthropic]:
    """A fake Anthropic API on 127.0.0.1, with the app's real SDK client pointed at it."""
    fake = FakeAnthropic().start()
    settings.ANTHROPIC_API_KEY = "test-anthropic-key"
    settings.ANTHROPIC_BASE_URL = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def fake_openai(settings) -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible API on 127.0.0.1, with the app's real SDK client pointed at it."""
    fake = FakeOpenAI().start()
    settings.OPENAI_API_KEY = "test-openai-key"
    settings.OPENAI_BASE_URL = fake.base_url
    yield fake
    fake.stop()


@pytest.fixture
def fake_stt() -> Iterator[FakeRealtimeStt]:
    """A fake Together realtime speech-to-text server; point a client at `fake_stt.url`."""
    fake = FakeRealtimeStt().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_deepgram() -> Iterator[FakeDeepgram]:
    """A fake Deepgram live server; point a client at `fake_deepgram.url`."""
    fake = FakeDeepgram().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_together() -> Iterator[FakeTogetherTts]:
    """A fake Together speech websocket that wants TTS_TEST_KEY."""
    fake = FakeTogetherTts(api_key=TTS_TEST_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
async def together_tts(fake_together: FakeTogetherTts) -> AsyncIterator[TogetherTts]:
    """The real Together client on the fake; a short done-grace keeps tests quick."""
    tts = TogetherTts(api_key=TTS_TEST_KEY, base_url=fake_together.base_url, done_grace=0.05, **TEST_TIMEOUTS)
    yield tts
    await tts.close()


@pytest.fixture
def fake_cartesia() -> Iterator[FakeCartesiaTts]:
    """A fake Cartesia speech websocket that wants TTS_TEST_KEY."""
    fake = FakeCartesiaTts(api_key=TTS_TEST_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
async def cartesia_tts(fake_cartesia: FakeCartesiaTts) -> AsyncIterator[CartesiaTts]:
    tts = CartesiaTts(api_key=TTS_TEST_KEY, base_url=fake_cartesia.base_url, **TEST_TIMEOUTS)
    yield tts
    await tts.close()


@pytest.fixture
def reply_into() -> Callable[..., ReplyStream]:
    """`reply_into(tokens)`: a reply whose tokens are appended to `tokens`; with `abort_at=n` it
    aborts itself once it has n of them (what an interrupt does)."""

    def make(tokens: list[str], *, abort_at: int | None = None) -> ReplyStream:
        async def sink(token: str) -> None:
            tokens.append(token)
            if len(tokens) == abort_at:
                reply.abort()

        reply = ReplyStream(sink)
        return reply

    return make


@pytest.fixture
def cancel_held_reply() -> Callable[..., Awaitable[tuple[list[str], ReplyStream]]]:
    """`await cancel_held_reply(stream, after=n)` runs `stream(reply)` (a provider driven as the engine drives it)
    until n tokens are in, then stops it as the engine stops a reply the server is holding: abort,
    then cancel the task, since no line will wake its loop. Returns the tokens and the reply."""

    async def cancel(
        stream: Callable[[ReplyStream], Coroutine[Any, Any, object]], *, after: int
    ) -> tuple[list[str], ReplyStream]:
        tokens: list[str] = []
        enough = asyncio.Event()

        async def sink(token: str) -> None:
            tokens.append(token)
            if len(tokens) == after:
                enough.set()

        reply = ReplyStream(sink)
        task = asyncio.create_task(stream(reply))
        await asyncio.wait_for(enough.wait(), 5)
        reply.abort()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return tokens, reply

    return cancel


@pytest.fixture
def twilio_token(settings) -> str:
    settings.TWILIO_AUTH_TOKEN = TWILIO_TEST_TOKEN
    settings.PUBLIC_BASE_URL = "https://switchboard.example.com"
    return TWILIO_TEST_TOKEN


@pytest.fixture
def twilio_post(client: Client, twilio_token, settings) -> Callable[..., object]:
    """POST form params to one of our webhooks, signed as Twilio signs it (against the public URL)."""

    def post(path: str, params: dict[str, str], *, signature: str | None = None):
        url = f"{settings.PUBLIC_BASE_URL}{path}"
        if signature is None:
            signature = RequestValidator(twilio_token).compute_signature(url, params)
        return client.post(path, params, headers={"X-Twilio-Signature": signature})

    return post


@pytest.fixture
def sign_handshake(twilio_token) -> Callable[[str], str]:
    """The X-Twilio-Signature Twilio sends on the websocket upgrade to `url`."""
    return lambda url: RequestValidator(twilio_token).compute_signature(url, {})


class RelayClient:
    """Plays Twilio's side of a ConversationRelay socket against the real ASGI application."""

    def __init__(self, communicator: WebsocketCommunicator, call_sid: str) -> None:
        self.ws = communicator
        self.call_sid = call_sid
        self.closed = False

    async def setup(self, **fields: object) -> None:
        frame = {
            "type": "setup",
            "sessionId": "VX" + "0" * 32,
            "accountSid": "AC" + "0" * 32,
            "callSid": self.call_sid,
            "from": "+14155550198",
            "to": "+14155550100",
            "direction": "inbound",
            "callStatus": "RINGING",
            "customParameters": {"call_ref": "test"},
            **fields,
        }
        await self.ws.send_json_to(frame)

    async def prompt(self, text: str) -> None:
        await self.ws.send_json_to({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True})

    async def interrupt(self, utterance: str, duration_ms: int | None = 800) -> None:
        await self.ws.send_json_to(
            {
                "type": "interrupt",
                "utteranceUntilInterrupt": utterance,
                "durationUntilInterruptMs": duration_ms,
            }
        )

    async def tokens(self, count: int, timeout: float = 5) -> list[str]:
        """The next `count` text tokens (none of them may close the talk cycle)."""
        tokens = []
        for _ in range(count):
            frame = await self.ws.receive_json_from(timeout)
            assert frame["type"] == "text" and frame["last"] is False, frame
            tokens.append(frame["token"])
        return tokens

    async def reply(self, timeout: float = 5) -> list[dict]:
        """Every frame up to and including the one that closes the talk cycle."""
        frames: list[dict] = []
        while not frames or not frames[-1].get("last"):
            frames.append(await self.ws.receive_json_from(timeout))
        return frames

    async def hang_up(self) -> None:
        self.closed = True
        await self.ws.disconnect()


@pytest.fixture
async def relay(sign_handshake) -> AsyncIterator[Callable[..., Awaitable[RelayClient | None]]]:
    """Open signed relay sockets on the real ASGI app; any still open are hung up afterwards."""
    from voiceproject.asgi import application

    opened: list[RelayClient] = []

    async def open_relay(
        call_sid: str = "CA" + "a" * 32, *, signature: str | None = None, setup: bool = True
    ) -> RelayClient | None:
        headers = []
        if signature != "":
            signature = signature or sign_handshake("wss://switchboard.example.com/ws/relay/")
            headers.append((b"x-twilio-signature", signature.encode()))
        communicator = WebsocketCommunicator(application, "/ws/relay/", headers=headers)
        connected, _ = await communicator.connect()
        if not connected:
            return None
        client = RelayClient(communicator, call_sid)
        opened.append(client)
        if setup:
            await client.setup()
        return client

    yield open_relay
    for client in opened:
        if not client.closed:
            await client.hang_up()


@pytest.fixture
async def database_outage(transactional_db) -> AsyncIterator[OutageProxy]:
    """The app's database connections, on every thread, go through a proxy the test can cut: what
    a PostgreSQL restart does to the app, without restarting the machine's shared server."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    database = connections.settings["default"]
    port = database["PORT"]
    proxy = OutageProxy(database["HOST"] or "127.0.0.1", int(port or 5432)).start()
    await sync_to_async(lambda: connection.close())()  # the database thread's, made anew
    database["PORT"] = str(proxy.port)
    try:
        yield proxy
    finally:
        proxy.restore()
        database["PORT"] = port
        await sync_to_async(lambda: connection.close())()
        proxy.stop()
