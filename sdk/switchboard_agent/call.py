"""What a turn.end frame tells the agent: the call, the turn, and the conversation so far."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .reply import ReplyStream


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of the conversation as the caller experienced it."""

    role: str
    """"user" (the caller) or "assistant" (the agent)."""
    text: str
    """For an agent turn the caller cut off, only the part they heard."""

    @classmethod
    def parse_history(cls, raw: Any) -> tuple[Message, ...]:
        """Read a frame's `history` list; raises ValueError when it is not one."""
        if not isinstance(raw, list):
            raise ValueError("history is not a list")
        messages = []
        for item in raw:
            if not (isinstance(item, Mapping) and isinstance(item.get("role"), str)):
                raise ValueError(f"history entry without a role: {item!r}")
            text = item.get("text")
            if not isinstance(text, str):
                raise ValueError(f"history entry without text: {item!r}")
            messages.append(cls(role=item["role"], text=text))
        return tuple(messages)


@dataclass(frozen=True, slots=True)
class Turn:
    """A finished caller turn, to be answered with `call.reply_stream(turn)`."""

    id: str
    call_sid: str
    text: str
    """What the caller said."""
    history: tuple[Message, ...] = ()
    """The conversation so far, ending with this turn."""


class _Link(Protocol):
    """What a call needs from the agent that received it (the agent implements it)."""

    def stream_for(self, turn: Turn) -> ReplyStream: ...

    async def request_history(self, call_sid: str, timeout: float | None) -> Sequence[Message]: ...


@dataclass(eq=False)
class Call:
    """A phone call assigned to this agent. The same object is passed with every turn of the call,
    so `state` can carry your own per-call data from one turn to the next."""

    call_sid: str
    persona: str = ""
    from_number: str = ""
    to_number: str = ""
    language: str = ""
    """The current speech language (it can change during a call)."""
    ended: bool = False
    """True once the caller (or the agent) hung up."""
    state: dict[str, Any] = field(default_factory=dict)
    """Yours: anything to keep for the rest of the call."""
    _link: _Link | None = field(default=None, repr=False)

    def reply_stream(self, turn: Turn) -> ReplyStream:
        """The reply stream for `turn` (one per turn: calling this again returns the same one)."""
        if turn.call_sid != self.call_sid:
            raise ValueError(f"turn {turn.id} belongs to call {turn.call_sid}, not {self.call_sid}")
        if self._link is None:
            raise RuntimeError("this Call was not received from an Agent")
        return self._link.stream_for(turn)

    async def get_history(self, timeout: float | None = None) -> list[Message]:
        """Ask the server for the conversation so far (as the caller heard it).

        Raises TimeoutError when no answer comes within `timeout` seconds (default: the agent's
        `history_timeout`), HistoryError when the server answers with an error, and
        NotConnectedError when the agent is not connected or loses the connection meanwhile.
        """
        if self._link is None:
            raise RuntimeError("this Call was not received from an Agent")
        return list(await self._link.request_history(self.call_sid, timeout))
