"""Transfers to a human: the `<Dial>` that follows the agent's handoff, and its `<Dial action>`.

The engine ends the relay session with handoff data `{"action": "transfer", ...}`; the
`<Connect action>` answers a `<Dial>` to the persona's handoff number. When that leg ends,
Twilio asks `POST /twilio/dial-action/` with `DialCallStatus`: the caller hears an apology when
nobody answered, and the call ends either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import transaction
from twilio.twiml.voice_response import VoiceResponse

from calls.models import Call
from calls.store.lifecycle import end_locked_call
from calls.webhooks.signatures import public_url
from calls.webhooks.twiml import say_and_hang_up

logger = logging.getLogger(__name__)

DIAL_ACTION = "dial-action"
DIAL_ACTION_PATH = "/twilio/dial-action/"
DIAL_TIMEOUT_SECONDS = 25
NO_ONE_AVAILABLE = (
    "I'm sorry, there's no one available to take your call right now. Someone will call you back."
)
DIAL_APOLOGY = "I'm sorry, no one could take your call right now. Someone will call you back. Goodbye."
# DialCallStatus values that mean the caller was connected ("answered" is what conferences report).
CONNECTED = frozenset({"completed", "answered"})


def transfer_twiml(number: str) -> str:
    """Dial the human; the Dial's action reports how that went. No <Say>: the agent announced
    the transfer in its own voice before handing the call back."""
    response = VoiceResponse()
    response.dial(number, action=public_url(DIAL_ACTION_PATH), timeout=DIAL_TIMEOUT_SECONDS)
    return str(response)


def no_one_available_twiml() -> str:
    return say_and_hang_up(NO_ONE_AVAILABLE)


@dataclass(frozen=True)
class DialEnd:
    """The fields of one `<Dial action>` request that we act on."""

    call_sid: str
    dial_status: str  # completed, answered, busy, no-answer, failed or canceled
    dial_duration: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DialEnd:
        duration = params.get("DialCallDuration", "")
        return cls(
            call_sid=params.get("CallSid", ""),
            dial_status=params.get("DialCallStatus", "").lower(),
            dial_duration=int(duration) if duration.isdigit() else None,
        )

    @property
    def connected(self) -> bool:
        return self.dial_status in CONNECTED


def dial_action_twiml(end: DialEnd) -> str:
    """Record the transfer's outcome in `metadata["handoff"]` and end the call: with an apology
    when nobody took it. Hanging up is an end signal: it asks for the call's summary."""
    twiml = say_and_hang_up() if end.connected else say_and_hang_up(DIAL_APOLOGY)
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(call_sid=end.call_sid).first()
        if call is None:
            logger.warning("dial action for unknown call %r (%s)", end.call_sid, end.dial_status)
            return twiml
        handoff = call.metadata.get("handoff")
        if not isinstance(handoff, dict):  # no transfer of ours started this Dial: keep what was there
            handoff = {} if handoff is None else {"data": handoff}
        handoff["dial_status"] = end.dial_status
        if end.dial_duration is not None:
            handoff["dial_duration"] = end.dial_duration
        call.metadata["handoff"] = handoff
        call.save(update_fields=["metadata", "updated_at"])
        logger.info("call %s: transfer ended %s", call.call_sid, end.dial_status or "(no status)")
        end_locked_call(call, source=DIAL_ACTION)
    return twiml
