"""The change feed between server processes: a committed edit is announced on Redis, and every
process's listener reloads the personas it holds, so live calls use the edit within a second."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.db import transaction

from agents import directory, persona_feed
from agents.models import Persona
from fakes.outage import OutageProxy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the feed needs REDIS_URL"),
]

WITHIN_SECONDS = 1.0


def wait_for(predicate: Callable[[], Any], timeout: float = WITHIN_SECONDS) -> Any:
    """Poll until `predicate` returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        time.sleep(0.01)
    return result


@pytest.fixture
def subscribed_listener(default_persona) -> persona_feed.PersonaFeed:
    """This process's listener, started by the directory's first load, once it is subscribed."""
    directory.persona_entry(default_persona.pk)
    listener = persona_feed.process_listener()
    assert isinstance(listener, persona_feed.PersonaFeed)
    assert listener.subscribed.wait(5)
    return listener


@pytest.fixture
def channel() -> Iterator[redis.client.PubSub]:
    """A subscription of the test's own to the feed's channel, as another process has."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(persona_feed.channel_for(settings.REDIS_URL))
    wait_for(lambda: pubsub.get_message(timeout=0.1) is None and pubsub.subscribed, timeout=5)
    yield pubsub
    pubsub.close()
    client.close()


def test_the_channel_carries_the_redis_database_number():
    # Pub/sub ignores database numbers: test runs on other databases must not hear this one.
    assert persona_feed.channel_for("redis://127.0.0.1:6379/15") == "switchboard:personas:15"
    assert persona_feed.channel_for("redis://redis:6379") == "switchboard:personas:0"


def test_the_first_load_starts_one_listener_for_the_process(subscribed_listener, default_persona):
    directory.reset()
    directory.persona_entry(default_persona.pk)
    assert persona_feed.process_listener() is subscribed_listener
    assert subscribed_listener.channel == persona_feed.channel_for(settings.REDIS_URL)


def test_a_save_is_announced_once_it_commits(default_persona, channel):
    while channel.get_message(timeout=0.1) is not None:
        pass  # the fixture's own save
    with transaction.atomic():
        default_persona.system_prompt = "Be brief."
        default_persona.save()
        assert channel.get_message(timeout=0.2) is None  # not before the commit
    message = channel.get_message(timeout=2)
    assert message is not None
    assert json.loads(message["data"]) == {
        "model": "agents.persona",
        "pk": default_persona.pk,
        "origin": persona_feed.ORIGIN,
    }


def test_an_edit_announced_by_another_process_reaches_live_calls_here(subscribed_listener, default_persona):
    live = directory.persona_entry(default_persona.pk).persona  # what a live call holds
    changes = subscribed_listener.changes
    # Another process saves (no signal here) and announces it.
    Persona.objects.filter(pk=default_persona.pk).update(system_prompt="Edited elsewhere.")
    client = redis.Redis.from_url(settings.REDIS_URL)
    message = {"model": "agents.persona", "pk": default_persona.pk, "origin": "elsewhere:1"}
    client.publish(persona_feed.channel_for(settings.REDIS_URL), json.dumps(message))
    client.close()

    fresh = wait_for(lambda: (p := directory.current(live)) is not live and p)
    assert fresh.system_prompt == "Edited elsewhere."
    assert subscribed_listener.changes > changes
    # New calls too, with no TTL to wait out.
    assert directory.persona_entry(default_persona.pk).persona.system_prompt == "Edited elsewhere."


def test_without_the_feed_an_edit_elsewhere_waits_for_the_ttl(subscribed_listener, default_persona):
    live = directory.persona_entry(default_persona.pk).persona
    Persona.objects.filter(pk=default_persona.pk).update(system_prompt="Edited elsewhere.")
    assert directory.current(live) is live
    assert directory.persona_entry(default_persona.pk).persona.system_prompt != "Edited elsewhere."


def test_a_save_here_reaches_live_calls_here(subscribed_listener, default_persona):
    live = directory.persona_entry(default_persona.pk).persona
    default_persona.system_prompt = "Be brief."
    default_persona.save()
    # Reloaded by the feed's thread: the live call's next reply needs no load of its own.
    assert wait_for(lambda: directory.current(live).system_prompt == "Be brief.")


def test_a_deleted_persona_leaves_live_calls_their_copy(subscribed_listener, other_persona):
    live = directory.persona_entry(other_persona.pk).persona
    reloads = persona_feed.process_reloads()
    done = reloads.count
    other_persona.delete()
    wait_for(lambda: reloads.count > done)
    assert directory.current(live) is live


@pytest.fixture
def redis_outage() -> Iterator[OutageProxy]:
    """A proxy in front of the test Redis that the test can cut."""
    target = urlsplit(settings.REDIS_URL)
    with OutageProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        yield proxy


def test_the_listener_reconnects_with_backoff_and_reloads_what_it_missed(redis_outage, caplog):
    caplog.set_level(logging.INFO, logger="agents.persona_feed")
    target = urlsplit(settings.REDIS_URL)
    url = target._replace(netloc=f"127.0.0.1:{redis_outage.port}").geturl()
    forgets: list[float] = []
    changes: list[float] = []
    feed = persona_feed.PersonaFeed(
        url, lambda: forgets.append(time.monotonic()), lambda: changes.append(time.monotonic())
    ).start()
    publisher = redis.Redis.from_url(settings.REDIS_URL)  # straight to Redis, not through the proxy
    try:
        assert feed.subscribed.wait(5)
        publisher.publish(feed.channel, json.dumps({"origin": persona_feed.ORIGIN}))  # handled already
        publisher.publish(feed.channel, json.dumps({"origin": "elsewhere:1"}))
        wait_for(lambda: len(changes) == 1)
        assert forgets[0] <= changes[0]  # dropped at once, then reloaded

        redis_outage.cut()
        wait_for(lambda: not feed.subscribed.is_set(), timeout=5)
        publisher.publish(feed.channel, "{}")  # lost: nobody listens through the proxy
        wait_for(lambda: redis_outage.refused >= 2, timeout=5)  # it keeps trying
        assert len(changes) == 1

        redis_outage.restore()
        assert feed.subscribed.wait(persona_feed.RECONNECT_MAX_SECONDS + 2)
        wait_for(lambda: len(changes) == 2)  # what was missed meanwhile is dropped and reloaded
        publisher.publish(feed.channel, "{}")
        wait_for(lambda: len(changes) == 3)
        assert len(forgets) == 3
    finally:
        feed.stop()
        publisher.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # one line per outage
    assert "disconnected" in warnings[0].getMessage()
