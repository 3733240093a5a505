"""The `<Connect action>` callback: what the call does once its ConversationRelay session ends.

Twilio asks this with SessionStatus `completed` (the caller hung up), `ended` (our engine sent
`end`, maybe with handoff data) or `failed` (an error, e.g. our socket dropped). A call that is
still up after a failure is reconnected, without a greeting, to resume its stored conversation,
at most MAX_RECONNECTS times; then the caller hears an apology and the call ends.

The engine's handoff data is JSON with an `action`: `transfer` dials the persona's handoff number
(`calls/transfers.py`), `end` hangs up (the agent already said goodbye).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents import directory
from calls.metadata import TwilioError
from calls.models import Call
from calls.store.lifecycle import end_locked_call, reopen_locked_call
from calls.webhooks.transfers import no_one_available_twiml, transfer_twiml
from calls.webhooks.twiml import connect_relay_twiml, say_and_hang_up

logger = logging.getLogger(__name__)

RELAY_ACTION = "relay-action"
MAX_RECONNECTS = 2
HANDOFF_GOODBYE = "Thank you for calling. Someone from our team will follow up with you soon. Goodbye."
APOLOGY = (
    "I'm sorry, we're having technical trouble and need to end this call. "
    "Please call back in a few minutes. Goodbye."
)


@dataclass(frozen=True)
class SessionEnd:
    """The fields of one `<Connect action>` request that we act on."""

    call_sid: str
    call_status: str  # Twilio's: in-progress while the call is still up
    session_status: str  # completed, ended or failed
    session_id: str = ""
    handoff_data: str = ""
    error_code: str = ""
    error_message: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> SessionEnd:
        return cls(
            call_sid=params.get("CallSid", ""),
            call_status=params.get("CallStatus", "").lower(),
            session_status=params.get("SessionStatus", "").lower(),
            session_id=params.get("SessionId", ""),
            handoff_data=params.get("HandoffData", ""),
            error_code=params.get("ErrorCode", ""),
            error_message=params.get("ErrorMessage", ""),
        )

    @property
    def call_is_up(self) -> bool:
        return self.call_status == "in-progress"


@dataclass(frozen=True)
class Reply:
    twiml: str
    ends_call: bool


def handoff_reply(call: Call, handoff: Any) -> Reply:
    """What to do when the agent ended the session with handoff data (the call is still up).

    `transfer` dials the persona's handoff number, or apologises when it has none; `end` just
    hangs up, since the agent has said goodbye; anything else gets a polite goodbye.
    """
    action = handoff.get("action") if isinstance(handoff, dict) else None
    if action == "end":
        return Reply(say_and_hang_up(), ends_call=True)
    if action != "transfer":
        return Reply(say_and_hang_up(HANDOFF_GOODBYE), ends_call=True)
    number = call.persona.handoff_number
    if not number:
        logger.warning(
            "call %s: transfer asked for, but %s has no handoff number", call.call_sid, call.persona
        )
        return Reply(no_one_available_twiml(), ends_call=True)
    if call.is_over and not reopen_locked_call(call):
        return Reply(say_and_hang_up(), ends_call=True)  # Twilio already reported the call over
    call.metadata["handoff"] = {**handoff, "transfer_to": number}
    logger.info("call %s: transferring to %s", call.call_sid, number)
    return Reply(transfer_twiml(number), ends_call=False)  # the dial action ends it


def _reconnect_or_apologise(call: Call) -> Reply:
    reconnects = call.metadata.get("reconnects", 0)
    if reconnects >= MAX_RECONNECTS:
        logger.warning(
            "call %s: relay failed again after %s reconnects; hanging up", call.call_sid, reconnects
        )
        return Reply(say_and_hang_up(APOLOGY), ends_call=True)
    if call.is_over and not reopen_locked_call(call):
        return Reply(say_and_hang_up(), ends_call=True)  # Twilio already reported the call over
    call.metadata["reconnects"] = reconnects + 1
    logger.info(
        "call %s: relay failed; reconnecting (%s of %s)", call.call_sid, reconnects + 1, MAX_RECONNECTS
    )
    entry = directory.persona_entry(call.persona_id)
    twiml = connect_relay_twiml(call=call, persona=entry.persona, greet=False, switchable=entry.switchable)
    return Reply(twiml, ends_call=False)


def session_end_reply(call: Call, end: SessionEnd) -> Reply:
    """The decision: reconnect, hand off, or hang up."""
    if end.session_status == "failed" and end.call_is_up:
        return _reconnect_or_apologise(call)
    if end.session_status == "ended" and end.handoff_data and end.call_is_up:
        return handoff_reply(call, call.metadata["handoff"])
    if end.session_status not in ("completed", "ended", "failed"):
        logger.warning("call %s: unknown SessionStatus %r; hanging up", call.call_sid, end.session_status)
    return Reply(say_and_hang_up(), ends_call=True)


def _parse_handoff(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def relay_action_twiml(end: SessionEnd) -> str:
    """Record what the session end reports (errors, handoff data) and answer the TwiML that
    continues the call. Hanging up is an end signal: it asks for the call's summary."""
    with transaction.atomic():
        # of=self: lock the call, not the persona row the join brings along.
        calls = Call.objects.select_for_update(of=("self",)).select_related("persona")
        call = calls.filter(call_sid=end.call_sid).first()
        if call is None:
            logger.warning("relay action for unknown call %r (%s)", end.call_sid, end.session_status)
            return say_and_hang_up()
        if end.error_code or end.error_message:
            error: TwilioError = {
                "code": end.error_code,
                "message": end.error_message,
                "session_id": end.session_id,
                "at": timezone.now().isoformat(),
            }
            call.metadata.setdefault("errors", []).append(error)
            logger.warning("call %s: relay error %s %s", call.call_sid, end.error_code, end.error_message)
        if end.handoff_data:
            call.metadata["handoff"] = _parse_handoff(end.handoff_data)
        reply = session_end_reply(call, end)
        if not reply.ends_call:
            # Twilio reconnects or transfers the call: the session that ended is over, and its
            # socket's own end, if it comes later, must not end the call (calls_ended).
            call.session_id = ""
        call.save()
        if reply.ends_call:
            end_locked_call(call, source=RELAY_ACTION)
    return reply.twiml
