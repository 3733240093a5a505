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

CALL_SID = "CA" + "3c" * 16
STREAM_SID = "MZ" + "4d" * 16


def test_start_carries_the_call_and_its_parameters():
    event = parse_event(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": STREAM_SID,
                "start": {
                    "streamSid": STREAM_SID,
                    "callSid": CALL_SID,
                    "customParameters": {"call_id": "7", "persona_id": "2"},
                },
            }
        )
    )
    assert isinstance(event, Start) and event.stream_sid == STREAM_SID
    assert event.call.call_sid == CALL_SID and event.call.session_id == STREAM_SID
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


def start_event(**fields: object) -> str:
    start = {"streamSid": STREAM_SID, "callSid": CALL_SID, "accountSid": "AC" + "0" * 32, **fields}
    return json.dumps({"event": "start", "start": start})


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"streamSid": "MZ1"}, "start: streamSid 'MZ1' is not MZ"),
        ({"streamSid": "MZ" + "f" * 98}, "start: streamSid 'MZfff.*…' is not MZ"),
        ({"callSid": "CA1"}, "start: callSid 'CA1' is not CA"),
        ({"callSid": STREAM_SID}, "start: callSid 'MZ.*' is not CA"),
        ({"accountSid": "AC" + "z" * 32}, "start: accountSid .* is not AC"),
    ],
)
def test_a_start_with_identifiers_that_are_not_twilios_is_refused(fields, reason):
    with pytest.raises(FrameError, match=reason):
        parse_event(start_event(**fields))


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
