"""The entries of a call's `metadata` (Call.metadata, JSON) that cross modules, as types.

The engine writes the handoff, its errors and the language while the call is live
(calls/store/recorder.py); the webhooks add Twilio's errors and a transfer's outcome
(calls/webhooks/); the admin, the summaries and the privacy code read them. What is stored is not
checked against these on read (older rows, handoff data that came back from Twilio as plain text):
readers still test what they get.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# The arguments of the end_call and transfer_to_human tools that the handoff carries
# (calls/engine/tools.py).
HANDOFF_ARGUMENTS: tuple[Literal["reason", "summary"], ...] = ("reason", "summary")


class Handoff(TypedDict):
    """How the agent ended the session: the JSON of ConversationRelay's `handoffData` (a Media
    Streams call stores it itself), kept as `metadata["handoff"]`."""

    action: Literal["end", "transfer"]
    reason: NotRequired[str]
    summary: NotRequired[str]  # a transfer's: what the colleague should know
    transfer_to: NotRequired[str]  # the number dialled (calls/webhooks/relay_actions.py)
    dial_status: NotRequired[str]  # the transfer's outcome (calls/webhooks/transfers.py)
    dial_duration: NotRequired[int]


# Where an error the engine noted came from: a transport's socket or speech provider, or the model.
ErrorSource = Literal["relay", "stt", "tts", "model"]


class EngineError(TypedDict):
    """An error the live call's engine keeps in `metadata["errors"]` (CallRecorder.note, which
    adds `at`): a transport's (`description`) or the model's (`turn` and `error`)."""

    source: ErrorSource
    description: NotRequired[str]
    turn: NotRequired[int]
    error: NotRequired[str]
    at: NotRequired[str]  # ISO 8601, set when it is queued


class TwilioError(TypedDict):
    """An error Twilio reported with a ConversationRelay session's end, in `metadata["errors"]`."""

    code: str
    message: str
    session_id: str
    at: str  # ISO 8601
