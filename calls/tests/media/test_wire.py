"""The Media Streams wire format: Twilio's events in, ours out (mediastreams.md §2-3)."""

from __future__ import annotations

import base64
import json

import pytest

from calls.media.wire import (
    Dtmf,
    FrameError,
    Mark,
    Media,
    Start,
    Stop,
    clear_event,
    mark_event,
    media_event,
    parse_event,
)


def test_start_carries_the_call_and_its_parameters():
    event = parse_event(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ1",
                "start": {
                    "streamSid": "MZ1",
                    "callSid": "CA1",
                    "customParameters": {"call_id": "7", "persona_id": "2"},
                },
            }
        )
    )
    assert isinstance(event, Start) and event.stream_sid == "MZ1"
    assert event.call.call_sid == "CA1" and event.call.session_id == "MZ1"
    assert event.call.custom_parameters["call_id"] == "7"


def test_media_mark_dtmf_and_stop():
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = parse_event(json.dumps({"event": "media", "media": {"payload": payload, "timestamp": "52"}}))
    assert media == Media(b"\xff" * 160, 52)
    assert parse_event('{"event":"mark","mark":{"name":"s3"}}') == Mark("s3")
    assert parse_event('{"event":"dtmf","dtmf":{"digit":"#"}}') == Dtmf("#")
    assert parse_event('{"event":"stop","stop":{"callSid":"CA1"}}') == Stop("CA1")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"event":"dance"}', "unknown event"),
        ('{"event":"media","media":{"payload":"%%%"}}', "not base64"),
        ('{"event":"media","media":{"payload":""}}', "payload of 0 bytes"),
        ('{"event":"media","media":{"payload":"/w==","timestamp":"soon"}}', "timestamp"),
        ('{"event":"start","start":{"streamSid":"MZ1"}}', "without streamSid or callSid"),
        ('{"event":"mark","mark":{}}', "without a name"),
        ('{"event":"dtmf","dtmf":{"digit":"12"}}', "dtmf digit"),
        (b"\x00\x01", "binary frame"),
        ("x" * 70_000, "over the"),
    ],
)
def test_unusable_events_say_why(raw, reason):
    with pytest.raises(FrameError, match=reason):
        parse_event(raw)


def test_outbound_events_have_exactly_the_documented_keys():
    assert json.loads(media_event("MZ1", b"\xff\x7f")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert json.loads(mark_event("MZ1", "s1")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "s1"},
    }
    assert json.loads(clear_event("MZ1")) == {"event": "clear", "streamSid": "MZ1"}
