"""Write the replies of Switchboard phone calls from your own process.

Switchboard keeps the phone side of a call (Twilio, speech, interruptions, transcript); an agent
built with this package receives each finished caller turn over one websocket and streams the
reply back. See README.md for a quick start and PROTOCOL.md for the wire format.
"""

from .agent import Agent, CallEndedHandler, Event, InterruptedHandler, TurnHandler
from .backoff import Backoff
from .call import Call, Message, Turn
from .errors import AuthenticationError, HistoryError, NotConnectedError, SwitchboardError
from .reply import AbortReason, ReplyStream

__all__ = [
    "AbortReason",
    "Agent",
    "AuthenticationError",
    "Backoff",
    "Call",
    "CallEndedHandler",
    "Event",
    "HistoryError",
    "InterruptedHandler",
    "Message",
    "NotConnectedError",
    "ReplyStream",
    "SwitchboardError",
    "Turn",
    "TurnHandler",
]
__version__ = "0.1.0"
