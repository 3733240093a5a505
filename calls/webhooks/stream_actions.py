"""The `<Connect action>` of a Media Streams call: what the call does once its stream ends.

Twilio reports no session status or handoff data for a stream, so the media session stores its
handoff (`{"action": "transfer" | "end", ...}`) on the call before it closes the socket, and this
answers from it with the same rules as a ConversationRelay session's end
(calls/webhooks/relay_actions.py): transfer to the persona's human, or hang up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from calls.models import Call
from calls.webhooks.relay_actions import SessionEnd, relay_action_twiml


def stream_action_twiml(params: Mapping[str, str]) -> str:
    call_sid = params.get("CallSid", "")
    metadata = Call.objects.filter(call_sid=call_sid).values_list("metadata", flat=True).first() or {}
    handoff = metadata.get("handoff")
    end = SessionEnd(
        call_sid=call_sid,
        call_status=params.get("CallStatus", "").lower(),
        session_status="ended" if handoff else "completed",
        handoff_data=json.dumps(handoff) if handoff else "",
    )
    return relay_action_twiml(end)
