"""Twilio identifiers on the webhooks: a signed request whose CallSid, AccountSid or StreamSid is
not Twilio's shape is a 400 with a log line, never a 500 from a column it overflows."""

from __future__ import annotations

import logging

import pytest

from calls.models import Call
from calls.twilio_ids import is_sid, webhook_sid_problem

pytestmark = pytest.mark.django_db

GOOD_CALL = "CA" + "a1" * 16
GOOD_ACCOUNT = "AC" + "0f" * 16
WEBHOOKS = [
    "/twilio/voice/",
    "/twilio/status/",
    "/twilio/relay-action/",
    "/twilio/stream-action/",
    "/twilio/dial-action/",
]


def form(**overrides: str) -> dict[str, str]:
    return {
        "AccountSid": GOOD_ACCOUNT,
        "CallSid": GOOD_CALL,
        "CallStatus": "in-progress",
        "From": "+15550001111",
        "To": "+15550002222",
        **overrides,
    }


@pytest.mark.parametrize(
    ("value", "prefix", "ok"),
    [
        ("CA" + "0123456789abcdef" * 2, "CA", True),
        ("CA" + "0123456789ABCDEF" * 2, "CA", True),
        ("CA" + "f" * 31, "CA", False),
        ("CA" + "f" * 33, "CA", False),
        ("CA" + "f" * 98, "CA", False),
        ("ca" + "f" * 32, "CA", False),
        ("AC" + "f" * 32, "CA", False),
        ("CA" + "f" * 32 + "\n", "CA", False),
        ("CA" + "g" * 32, "CA", False),
        ("MZ" + "0" * 32, "MZ", True),
        ("", "CA", False),
        (None, "CA", False),
    ],
)
def test_a_sid_is_its_prefix_and_32_hex_digits(value, prefix, ok):
    assert is_sid(value, prefix) is ok


def test_only_call_sid_is_required_of_a_webhook():
    assert webhook_sid_problem({"CallSid": GOOD_CALL}) is None
    assert webhook_sid_problem({"CallSid": GOOD_CALL, "AccountSid": "", "StreamSid": ""}) is None
    assert webhook_sid_problem({}) == "CallSid is required"
    assert webhook_sid_problem({"CallSid": GOOD_CALL, "StreamSid": "MZ1"}) == (
        "StreamSid 'MZ1' is not MZ + 32 hex digits"
    )


@pytest.mark.parametrize("path", WEBHOOKS)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CallSid", "CA" + "f" * 98),  # the 500 of issue 14: longer than call_sid's column
        ("CallSid", "CA123"),
        ("CallSid", ""),
        ("AccountSid", "ACbench"),
        ("StreamSid", "MZ" + "x" * 32),
    ],
)
def test_a_signed_webhook_with_a_malformed_identifier_is_a_bad_request(
    twilio_post, default_persona, caplog, path, field, value
):
    with caplog.at_level(logging.WARNING, logger="calls.webhooks.requests"):
        response = twilio_post(path, form(**{field: value}))
    assert response.status_code == 400
    assert field in response.content.decode()
    [line] = [r for r in caplog.records if r.name == "calls.webhooks.requests"]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith(f"Refused webhook {path}: {field}")
    assert len(line.getMessage()) < 200  # an oversized value is cut short in the log
    assert not Call.objects.exists()


def test_the_signature_is_checked_before_the_identifiers(twilio_post, default_persona):
    response = twilio_post("/twilio/voice/", form(CallSid="CA123"), signature="forged")
    assert response.status_code == 403


def test_a_well_formed_webhook_still_goes_through(twilio_post, default_persona):
    response = twilio_post("/twilio/voice/", form(CallStatus="ringing", StreamSid="MZ" + "0" * 32))
    assert response.status_code == 200
    assert Call.objects.get().call_sid == GOOD_CALL
