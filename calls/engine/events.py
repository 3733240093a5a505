"""What a transport tells the store and the engine about the call it carries.

Plain data, so the wire parsers (ConversationRelay's `setup`, Media Streams' `start`) and the
webhooks can build them without importing the services that act on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A call Twilio is putting through to us, as its voice webhook describes it."""

    call_sid: str
    from_number: str = ""
    to_number: str = ""
    direction: str = "inbound"


@dataclass(frozen=True, slots=True)
class CallStart(IncomingCall):
    """A socket's start of session (a relay `setup`, a stream `start`): the call it carries, its
    session and custom parameters."""

    session_id: str = ""
    custom_parameters: dict = field(default_factory=dict)
