"""The contract between the conversation engine and a model provider.

A provider takes a `ModelRequest` (plain fields) and yields the reply's text deltas as its SDK's
stream delivers them, then the tool calls. It knows nothing of the engine: the engine reads the
deltas (calls/engine/reply.py) and closes the iterator when the caller interrupts, speaks again
or hangs up; closing must close the provider's stream, so no more tokens are paid for.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, TypedDict


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


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What running one of the model's tool calls gave: sent back to the model as the call's result."""

    call: ToolCall
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ToolRound:
    """One exchange within a reply: the model wrote `text` and called tools; these are their results.
    Each provider writes a round in its own format after the text-only `messages` (Anthropic:
    tool_use then tool_result blocks; OpenAI: `tool_calls`, then one `tool` message per call)."""

    text: str
    results: tuple[ToolResult, ...]


class ProviderError(Exception):
    """The model could not produce (the rest of) a reply."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One reply's request in plain fields: providers never see the ORM (agents.llm.request_for
    builds it from a persona)."""

    model: str
    system: str
    messages: list[ChatMessage]
    max_tokens: int = 300
    temperature: float = 0.7
    tools: Sequence[ToolSpec] = ()
    # The tool exchanges of the reply so far, after `messages`; empty for an ordinary reply.
    tool_rounds: Sequence[ToolRound] = ()
    # False: the tools are still described (a history with tool calls needs them) but the model
    # must answer in words (tool_choice "none"): the last round of a bounded tool loop.
    tools_allowed: bool = True
    speaker: str = ""  # who is speaking, for the demo model's lines


class LLMProvider(Protocol):
    def stream(self, request: ModelRequest) -> AsyncGenerator[str | ToolCall]:
        """Text deltas as the model writes them, then the tool calls it asked for. Whoever reads
        it stops by closing the iterator (`aclose`), which must close the provider's stream."""
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
