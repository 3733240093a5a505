"""Fixtures shared by every app's tests."""

from __future__ import annotations

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from agents.models import Persona


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _close_async_orm_connections():
    """Async ORM calls run on asgiref's worker thread, which keeps its own connection open;
    close it after each test so the test database can be dropped at the end."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


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
