"""Parsing Twilio's frames and writing ours."""

from __future__ import annotations

import json

import pytest

from calls.engine.events import CallStart
from calls.relay.wire import FrameError, Interrupt, Prompt, end_frame, parse_frame, text_frame

CALL_SID = "CA" + "1f" * 16
SESSION_ID = "VX" + "2e" * 16


def test_setup_keeps_what_the_engine_needs_and_ignores_unknown_fields():
    frame = parse_frame(
        json.dumps(
            {
                "type": "setup",
                "callSid": CALL_SID,
                "sessionId": SESSION_ID,
                "from": "+1555",
                "to": "+1666",
                "customParameters": {"call_id": 7},
                "somethingNew": {"x": 1},
            }
        )
    )
    assert frame == CallStart(
        call_sid=CALL_SID,
        session_id=SESSION_ID,
        from_number="+1555",
        to_number="+1666",
        custom_parameters={"call_id": "7"},
    )


def test_interrupt_duration_may_arrive_as_a_string():
    assert parse_frame(
        '{"type":"interrupt","utteranceUntilInterrupt":"Hi","durationUntilInterruptMs":"460"}'
    ) == Interrupt("Hi", 460.0)
    assert parse_frame('{"type":"interrupt","utteranceUntilInterrupt":"Hi"}') == Interrupt("Hi", None)


def test_partial_prompts_are_marked_not_last():
    assert parse_frame('{"type":"prompt","voicePrompt":"Hel","last":false}') == Prompt("Hel", last=False)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        ("{}", "no type"),
        ('{"type":"warp"}', "unknown type"),
        ('{"type":"prompt"}', "without voicePrompt"),
        ('{"type":"prompt","voicePrompt":{"a":1}}', "not a string"),
        ("x" * 70_000, "over the"),
        (None, "empty"),
    ],
)
def test_unusable_frames_raise_with_a_reason(raw, reason):
    with pytest.raises(FrameError, match=reason):
        parse_frame(raw)


def setup_frame(**fields: object) -> str:
    return json.dumps({"type": "setup", "callSid": CALL_SID, "sessionId": SESSION_ID, **fields})


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"callSid": "CA1"}, "setup: callSid 'CA1' is not CA"),
        ({"callSid": "CA" + "f" * 98}, "setup: callSid 'CAfff.*…' is not CA"),  # too long for its column
        ({"callSid": "MZ" + "f" * 32}, "callSid 'MZ.*' is not CA"),
        ({"callSid": "CA" + "g" * 32}, "callSid .* is not CA"),
        ({"callSid": CALL_SID + "\n"}, "callSid .* is not CA"),
        ({"accountSid": "ACbench"}, "setup: accountSid 'ACbench' is not AC"),
        ({"sessionId": "VX" + "0" * 64}, "setup: sessionId .* is not a Twilio sid"),
    ],
)
def test_a_setup_with_identifiers_that_are_not_twilios_is_refused(fields, reason):
    with pytest.raises(FrameError, match=reason):
        parse_frame(setup_frame(**fields))


def test_a_setup_with_twilio_shaped_identifiers_is_accepted():
    frame = parse_frame(setup_frame(accountSid="AC" + "0A" * 16))
    assert isinstance(frame, CallStart) and frame.call_sid == CALL_SID and frame.session_id == SESSION_ID


def test_text_frames_keep_token_spacing_and_unicode():
    assert json.loads(text_frame(" café", False)) == {"type": "text", "token": " café", "last": False}
    assert json.loads(text_frame('say "hi"\n', True)) == {"type": "text", "token": 'say "hi"\n', "last": True}


def test_end_frame_carries_handoff_data_as_a_string():
    assert json.loads(end_frame('{"reason":"done"}')) == {"type": "end", "handoffData": '{"reason":"done"}'}
    assert json.loads(end_frame()) == {"type": "end"}
