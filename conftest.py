"""Fixtures shared by every app's tests: personas, the fake Anthropic server, signed requests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client
from twilio.request_validator import RequestValidator

from agents.models import Persona
from fakes.anthropic_server import FakeAnthropic
from voiceproject.celery import app as celery_app

TWILIO_TEST_TOKEN = "test-twilio-auth-token"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
