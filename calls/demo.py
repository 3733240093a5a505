"""A realistic example call for a fresh install, so there is something to browse."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agents.models import Persona
from calls.models import Call, Turn

DEMO_CALL_SID = "CA00000000000000000000000000000de0"

# (role, heard text, generated text or "" when identical, interrupted, heard_confidence)
DEMO_TURNS = [
    (
        "assistant",
        "Hello, thanks for calling Harbor Street Dental. This is Maya. How can I help you today?",
        "",
        False,
        None,
    ),
    ("user", "Hi, I'd like to book a check-up for my son, he's eight.", "", False, None),
    (
        "assistant",
        "Of course, I can help with that. We see children from age three, and a check-up takes about",
        "Of course, I can help with that. We see children from age three, and a check-up takes about "
        "thirty minutes. Could I start with your son's name and a good phone number for you?",
        True,
        0.97,
    ),
    ("user", "Sorry, do you have anything on Saturday?", "", False, None),
    (
        "assistant",
        "We do. Saturday mornings we're open from nine until noon. Could I take your son's name "
        "and a phone number, so the team can call you back to confirm a time?",
        "",
        False,
        None,
    ),
    (
        "user",
        "Sure, it's Leo Martin, and my number is four one five, five five five, zero one nine eight.",
        "",
        False,
        None,
    ),
    (
        "assistant",
        "Thank you. That's Leo Martin, on four one five, five five five, zero one nine eight. "
        "The team will call you within one working day to confirm a Saturday morning. Anything else?",
        "",
        False,
        None,
    ),
    ("user", "No, that's all. Thanks!", "", False, None),
    ("assistant", "You're welcome. Have a lovely day, goodbye.", "", False, None),
]
# The agent hung up itself after its goodbye: the tool call on the last turn.
DEMO_END_CALL = {
    "name": "end_call",
    "arguments": {"reason": "caller said goodbye"},
    "result": "end sent to Twilio",
    "executed": True,
}


@transaction.atomic
def demo_call_create() -> tuple[Call, bool]:
    """Create the demo call once; later runs leave it (and any edits) alone."""
    existing = Call.objects.filter(call_sid=DEMO_CALL_SID).first()
    if existing:
        return existing, False
    persona = Persona.objects.filter(slug="front-desk").first() or Persona.objects.default()
    ended = timezone.now() - timedelta(minutes=5)
    started = ended - timedelta(seconds=74)
    call = Call.objects.create(
        call_sid=DEMO_CALL_SID,
        session_id="VX00000000000000000000000000000de0",
        persona=persona,
        from_number="+14155550198",
        to_number="+14155550100",
        status=Call.Status.COMPLETED,
        started_at=started,
        ended_at=ended,
        duration_seconds=74,
        summary=(
            "A parent called to book a check-up for their eight-year-old son, Leo Martin, and asked "
            "for a Saturday morning. Callback number +1 415 555 0198; the team should confirm a time "
            "within one working day."
        ),
        summary_status=Call.SummaryStatus.DONE,
        summary_data={
            "caller_intent": "Book a Saturday check-up for an eight-year-old",
            "outcome": Call.Outcome.FOLLOW_UP_NEEDED,
            "action_items": ["Call +1 415 555 0198 within one working day to confirm a Saturday morning."],
            "sentiment": "positive",
            "model": "demo",
        },
        summary_outcome=Call.Outcome.FOLLOW_UP_NEEDED,
        summary_requested_at=ended,
        metadata={
            "demo": True,
            "customParameters": {},
            "handoff": {"action": "end", "reason": "caller said goodbye"},
        },
    )
    Turn.objects.bulk_create(
        Turn(
            call=call,
            sequence=n,
            role=role,
            text=heard,
            generated_text=(generated or heard) if role == Turn.Role.ASSISTANT else "",
            interrupted=interrupted,
            heard_confidence=confidence,
            first_token_ms=420 + 37 * n if role == Turn.Role.ASSISTANT and n else None,
            completed_ms=2100 + 90 * n if role == Turn.Role.ASSISTANT and n else None,
            tool_calls=[DEMO_END_CALL] if n == len(DEMO_TURNS) - 1 else [],
        )
        for n, (role, heard, generated, interrupted, confidence) in enumerate(DEMO_TURNS)
    )
    return call, True
