"""The contract between the conversation engine and a model provider.

The engine hands the provider a ReplyStream bound to one user turn. The provider loops over its
SDK's stream, calls `write(token)` for every text delta, stops as soon as `aborted` turns true
(interrupt, newer prompt, hang-up), and always calls `end()`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, TypedDict

from agents.models import Persona


class ChatMessage(TypedDict):
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call, described by a JSON schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for in its reply, with parsed arguments."""

    name: str
    arguments: dict[str, Any]
    id: str = ""


class ProviderError(Exception):
    """The model could not produce (the rest of) a reply."""


class SpeechFilter(Protocol):
    """Turns model text into speakable text as it streams (see calls/speech.py)."""

    def feed(self, text: str) -> str: ...
    def flush(self) -> str: ...


class ReplyStream:
    """One reply in flight. `write` keeps the model's text as generated and forwards what is
    speakable of it at once, so after an interrupt the engine knows exactly what was produced
    (`text`) and what went out (`spoken`)."""

    __slots__ = ("_sink", "_speech", "aborted", "ended", "first_token_at", "parts", "spoken")

    def __init__(self, sink: Callable[[str], Awaitable[None]], speech: SpeechFilter | None = None) -> None:
        self._sink = sink
        self._speech = speech
        self.aborted = False
        self.ended = False
        self.parts: list[str] = []
        self.spoken: list[str] = []
        self.first_token_at: float | None = None

    async def write(self, token: str) -> None:
        if self.aborted or not token:
            return
        self.parts.append(token)
        await self._say(self._speech.feed(token) if self._speech else token)

    async def flush(self) -> None:
        """Send what the speech filter still holds (the reply is complete)."""
        if self._speech and not self.aborted:
            await self._say(self._speech.flush())

    async def _say(self, text: str) -> None:
        if not text:
            return
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        # Recorded before sending: a token cut off mid-send counts as sent, never as unsaid.
        self.spoken.append(text)
        await self._sink(text)

    def end(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.aborted = True

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def spoken_text(self) -> str:
        return "".join(self.spoken)


class LLMProvider(Protocol):
    async def stream_reply(
        self,
        *,
        persona: Persona,
        messages: list[ChatMessage],
        reply: ReplyStream,
        tools: Sequence[ToolSpec] = (),
        system: str | None = None,
    ) -> list[ToolCall]:
        """Stream the reply's text into `reply`; return the tool calls the model asked for."""
        ...


class SharedClient:
    """Providers built around an SDK client, one per (event loop, API key, base URL): a client's
    connection pool belongs to the loop that opened it, and reusing it skips a TLS handshake per reply."""

    _instances: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = weakref.WeakKeyDictionary()

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def make_client(cls, *, api_key: str, base_url: str) -> Any:
        raise NotImplementedError

    @classmethod
    def shared(cls, *, api_key: str, base_url: str = "") -> Self:
        per_loop = cls._instances.setdefault(asyncio.get_running_loop(), {})
        key = (api_key, base_url)
        if key not in per_loop:
            per_loop[key] = cls(cls.make_client(api_key=api_key, base_url=base_url))
        return per_loop[key]
