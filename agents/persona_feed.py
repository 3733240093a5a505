"""Persona edits, told to every server process over Redis pub/sub within milliseconds.

Each process keeps personas in memory (agents.directory). A save drops that process's copies at
once (signals); once it commits, `announce` publishes one message on the channel, and every other
process's listener drops its copies too. In each process a thread then reloads the personas it
held, for its live calls' next replies. The message says what changed, for logs; a listener drops
everything whatever it says:

    channel  switchboard:personas:<db>      <db>: REDIS_URL's database number
    message  {"model": "agents.persona", "pk": 3, "origin": "host:pid"}   (JSON; model and pk
             are null for a bulk change such as switching the default persona)

Pub/sub ignores Redis's database numbers, so the channel carries it: deployments (and test runs)
that share a Redis server on different databases do not hear each other.

The listener is one daemon thread per process, started by the directory's first load: no
database thread's, event loop's or reply's time goes to it. It reconnects with backoff when Redis
goes away; while it is disconnected edits arrive through the directory's TTL, and every
re-subscription drops and reloads, since messages published meanwhile are lost. Without
REDIS_URL (the embedded run, one process) there is no listener, only the reloads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "switchboard:personas"
RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
# An idle subscription is PINGed this often; one silent for twice as long is taken for dead (a
# host that vanished sends no reset, and the kernel would take many minutes to notice).
PING_SECONDS = 10.0
POLL_SECONDS = 0.5  # how long a stop can wait for the listener to notice
ORIGIN = f"{socket.gethostname()}:{os.getpid()}"

_lock = threading.Lock()
_started = False
_reloads: Reloads | None = None
_listener: PersonaFeed | None = None
_publisher: redis.Redis | None = None


def channel_for(url: str) -> str:
    """The channel of the Redis database `url` names."""
    database = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
    return f"{CHANNEL_PREFIX}:{database}"


def start(*, forget: Callable[[], None], reload: Callable[[], None]) -> None:
    """Once per process (later calls cost a global read, so a call start can afford them): a
    thread that calls `reload` after each change, here or elsewhere, and with REDIS_URL the
    listener, which calls `forget` at once for each change made elsewhere."""
    global _started, _reloads, _listener
    if _started:
        return
    with _lock:
        if _started:
            return
        _reloads = Reloads(reload).start()
        if settings.REDIS_URL:
            _listener = PersonaFeed(settings.REDIS_URL, forget, _reloads.wake).start()
        _started = True


def process_listener() -> PersonaFeed | None:
    """This process's listener, once the directory has started it (None without REDIS_URL)."""
    return _listener


def process_reloads() -> Reloads | None:
    """This process's reloading thread, once the directory has started it."""
    return _reloads


def announce(change: dict[str, Any]) -> None:
    """`change` committed in this process (which has forgotten what it held already): reload here,
    and tell every other process. A Redis failure is logged, never raised: the save stands, and
    other processes see it within the directory's TTL."""
    global _publisher
    if _reloads is not None:
        _reloads.wake()
    if not settings.REDIS_URL:
        return
    if _publisher is None:  # connections are made on first use; a pool is safe across threads
        _publisher = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    message = json.dumps({**change, "origin": ORIGIN})
    try:
        _publisher.publish(channel_for(settings.REDIS_URL), message)
    except redis.RedisError as exc:
        logger.warning("persona change not announced (other processes see it within the TTL): %s", exc)


class Reloads:
    """Calls `reload` on a thread of its own after each `wake()`; wakes during a reload make one
    more, so a burst (a persona saved with its languages) costs one or two."""

    def __init__(self, reload: Callable[[], None]) -> None:
        self.reload = reload
        self.count = 0  # reloads done, for tests to wait on
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="persona-reloads", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.reload()
            except Exception:  # the thread must outlive a failed reload: the TTL covers it
                logger.exception("reloading personas after a change failed")
            self.count += 1


class PersonaFeed:
    """Subscribes to the channel on a thread of its own. Each message from another process, and
    each re-subscription (messages published meanwhile are lost), calls `forget` then `changed`."""

    def __init__(self, url: str, forget: Callable[[], None], changed: Callable[[], None]) -> None:
        self.url = url
        self.channel = channel_for(url)
        self.forget = forget
        self.changed = changed
        self.subscribed = threading.Event()  # set while subscribed
        self.changes = 0  # changes passed on, for tests to wait on
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="persona-feed", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=POLL_SECONDS * 4)

    def _run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        first = True
        while not self._stopping.is_set():
            # Reconnecting is this loop's job (with backoff and one log line), not the client's.
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=5, socket_keepalive=True, retry=Retry(NoBackoff(), 0)
            )
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                self._listen(pubsub, first)
            except (redis.RedisError, OSError) as exc:
                if self.subscribed.is_set() or first:
                    logger.warning(
                        "persona feed disconnected, reconnecting (edits wait for the TTL): %s", exc
                    )
                    delay = RECONNECT_MIN_SECONDS  # it was up: the first retry comes quickly
                self.subscribed.clear()
            finally:
                pubsub.close()
                client.close()
            first = False
            self._stopping.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _listen(self, pubsub: redis.client.PubSub, first: bool) -> None:
        heard = pinged = time.monotonic()
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=POLL_SECONDS)
            now = time.monotonic()
            if message is None:
                if now - heard >= 2 * PING_SECONDS:
                    raise redis.ConnectionError(f"no answer from Redis for {now - heard:.0f} s")
                if now - heard >= PING_SECONDS and now - pinged >= PING_SECONDS:
                    pubsub.ping()
                    pinged = now
                continue
            heard = now
            if message["type"] == "subscribe":
                logger.info("persona feed subscribed to %s", self.channel)
                self.subscribed.set()
                # A re-subscription may have missed edits. The first one follows the process's
                # first load by milliseconds: a reload then would only repeat it.
                if not first:
                    self._changed()
            elif message["type"] == "message" and _origin(message["data"]) != ORIGIN:
                self._changed()  # this process's own saves were handled as they committed

    def _changed(self) -> None:
        self.forget()
        self.changed()
        self.changes += 1


def _origin(data: bytes) -> str | None:
    try:
        return json.loads(data).get("origin")
    except (ValueError, AttributeError):
        return None  # not ours to read: taken as a change, which costs a reload at most
