"""The status callback and the `<Connect action>` callback, over HTTP with Twilio's signatures."""

from __future__ import annotations

import json
import logging
from xml.etree import ElementTree

import pytest

from agents.models import Persona
from calls.models import Call
from calls.tests.conftest import call_ended
from calls.webhooks.relay_actions import APOLOGY, HANDOFF_GOODBYE, MAX_RECONNECTS
from calls.webhooks.transfers import DIAL_APOLOGY, NO_ONE_AVAILABLE

pytestmark = pytest.mark.django_db

STATUS = "/twilio/status/"
ACTION = "/twilio/relay-action/"
DIAL_ACTION = "/twilio/dial-action/"
HUMAN = "+14155550177"
SID = "CA" + "5" * 32


@pytest.fixture
def call(default_persona) -> Call:
    return Call.objects.create(
        call_sid=SID, persona=default_persona, from_number="+14155550100", status=Call.Status.IN_PROGRESS
    )


def status(twilio_post, call_status: str, sequence: int | None = None, **extra: str):
    params = {"CallSid": SID, "CallStatus": call_status, **extra}
    if sequence is not None:
        params["SequenceNumber"] = str(sequence)
    return twilio_post(STATUS, params)


def action(twilio_post, session_status: str, call_status: str = "in-progress", **extra: str):
    params = {"CallSid": SID, "CallStatus": call_status, "SessionStatus": session_status, **extra}
    return twilio_post(ACTION, {"SessionId": "VX" + "1" * 32, **params})


def twiml(response) -> ElementTree.Element:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    return ElementTree.fromstring(response.content)


def verbs(response) -> list[str]:
    return [element.tag for element in twiml(response)]


# --- signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [STATUS, ACTION, DIAL_ACTION])
@pytest.mark.parametrize("signature", ["not-a-valid-signature", ""])
def test_callbacks_with_a_bad_or_missing_signature_are_refused(twilio_post, call, path, signature):
    response = twilio_post(
        path,
        {"CallSid": SID, "CallStatus": "completed", "SessionStatus": "completed", "DialCallStatus": "busy"},
        signature=signature,
    )
    assert response.status_code == 403
    call.refresh_from_db()
    assert call.status == Call.Status.IN_PROGRESS and call.metadata == {}


def test_a_signature_for_other_parameters_is_refused(twilio_post, call, twilio_token, settings):
    from twilio.request_validator import RequestValidator

    signed_for = RequestValidator(twilio_token).compute_signature(
        f"{settings.PUBLIC_BASE_URL}{STATUS}", {"CallSid": SID, "CallStatus": "ringing"}
    )
    response = twilio_post(STATUS, {"CallSid": SID, "CallStatus": "completed"}, signature=signed_for)
    assert response.status_code == 403


@pytest.mark.parametrize("path", [STATUS, ACTION, DIAL_ACTION])
def test_callbacks_take_only_post(client, path):
    assert client.get(path).status_code == 405


# --- status callbacks ---------------------------------------------------------------------------


def test_status_callbacks_in_order_end_the_call_with_twilios_duration(
    twilio_post, call, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        assert verbs(status(twilio_post, "ringing", 0)) == []
        status(twilio_post, "in-progress", 1)
        status(twilio_post, "completed", 2, CallDuration="42")
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED and call.duration_seconds == 42
    assert call.ended_at is not None and call.metadata["status_sequence"] == 2
    assert call.summary_status == Call.SummaryStatus.QUEUED and call.summary_requested_at is not None
    assert len(enqueued) == 1


@pytest.mark.parametrize(
    "twilio_status, ours",
    [
        ("queued", Call.Status.RINGING),
        ("initiated", Call.Status.RINGING),
        ("ringing", Call.Status.RINGING),
        ("in-progress", Call.Status.IN_PROGRESS),
        ("completed", Call.Status.COMPLETED),
        ("busy", Call.Status.BUSY),
        ("failed", Call.Status.FAILED),
        ("no-answer", Call.Status.NO_ANSWER),
        ("canceled", Call.Status.CANCELED),
    ],
)
def test_every_twilio_call_status_maps_to_ours(twilio_post, default_persona, twilio_status, ours):
    call = Call.objects.create(call_sid=SID, persona=default_persona)
    status(twilio_post, twilio_status, 1)
    call.refresh_from_db()
    assert call.status == ours
    assert (call.ended_at is not None) == (ours in Call.Status.terminal())


def test_late_callbacks_never_move_a_call_back_from_a_terminal_status(twilio_post, call):
    status(twilio_post, "completed", 3, CallDuration="61")
    status(twilio_post, "in-progress", 2)
    status(twilio_post, "ringing", 1)
    status(twilio_post, "completed", 3, CallDuration="61")  # a duplicate
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED and call.duration_seconds == 61
    assert call.metadata["status_sequence"] == 3


def test_a_live_status_without_sequence_numbers_still_does_not_reopen_an_ended_call(twilio_post, call):
    status(twilio_post, "busy")
    status(twilio_post, "ringing")
    call.refresh_from_db()
    assert call.status == Call.Status.BUSY and "status_sequence" not in call.metadata


def test_an_older_sequence_number_is_ignored_even_for_a_live_status(twilio_post, default_persona):
    call = Call.objects.create(call_sid=SID, persona=default_persona)
    status(twilio_post, "in-progress", 2)
    status(twilio_post, "ringing", 1)
    call.refresh_from_db()
    assert call.status == Call.Status.IN_PROGRESS and call.started_at is not None
    assert call.metadata["status_sequence"] == 2


def test_twilios_terminal_status_replaces_the_one_the_socket_guessed(twilio_post, call):
    assert call_ended(call_id=call.pk, source="socket")
    status(twilio_post, "failed", 4, CallDuration="7")
    call.refresh_from_db()
    assert call.status == Call.Status.FAILED and call.duration_seconds == 7
    assert call.metadata["ended_by"] == "status-callback"


def test_a_status_callback_for_an_unknown_call_is_answered_and_logged(twilio_post, db, caplog):
    with caplog.at_level(logging.WARNING, logger="calls.webhooks.call_status"):
        response = twilio_post(STATUS, {"CallSid": "CA" + "0" * 32, "CallStatus": "completed"})
    assert verbs(response) == []
    assert "unknown call" in caplog.text


def test_an_unknown_call_status_changes_nothing(twilio_post, call):
    assert status(twilio_post, "teleported", 1).status_code == 200
    call.refresh_from_db()
    assert call.status == Call.Status.IN_PROGRESS and "status_sequence" not in call.metadata


# --- the <Connect action> callback --------------------------------------------------------------


def test_a_completed_session_hangs_up_and_ends_the_call(
    twilio_post, call, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        response = action(twilio_post, "completed", call_status="completed", SessionDuration="25")
    assert verbs(response) == ["Hangup"]
    call.refresh_from_db()
    assert call.is_over and call.metadata["ended_by"] == "relay-action"
    assert call.summary_status == Call.SummaryStatus.QUEUED and len(enqueued) == 1


def test_a_handoff_is_stored_and_answered_with_a_polite_goodbye(twilio_post, call):
    handoff = {"reason": "The caller asked for a person", "callback": "+14155550100"}
    response = action(twilio_post, "ended", HandoffData=json.dumps(handoff))
    root = twiml(response)
    assert [element.tag for element in root] == ["Say", "Hangup"]
    assert root.find("Say").text == HANDOFF_GOODBYE
    call.refresh_from_db()
    assert call.metadata["handoff"] == handoff and call.is_over


def test_handoff_data_that_is_not_json_is_kept_as_text(twilio_post, call):
    action(twilio_post, "ended", HandoffData="caller wants a human")
    call.refresh_from_db()
    assert call.metadata["handoff"] == "caller wants a human"


def test_a_dropped_socket_reconnects_without_a_greeting_then_gives_up_with_an_apology(twilio_post, call):
    error = {"ErrorCode": "64105", "ErrorMessage": "WebSocket ended"}
    for attempt in range(1, MAX_RECONNECTS + 1):
        root = twiml(action(twilio_post, "failed", **error))
        connect = root.find("Connect")
        assert [element.tag for element in root] == ["Connect"]
        assert connect.get("action") == "https://switchboard.example.com/twilio/relay-action/"
        relay = connect.find("ConversationRelay")
        assert relay is not None and "welcomeGreeting" not in relay.attrib
        assert "welcomeGreetingInterruptible" not in relay.attrib
        assert relay.get("url") == "wss://switchboard.example.com/ws/relay/"
        params = {p.get("name"): p.get("value") for p in relay.findall("Parameter")}
        assert params["call_id"] == str(call.pk)
        call.refresh_from_db()
        assert call.metadata["reconnects"] == attempt and not call.is_over

    root = twiml(action(twilio_post, "failed", **error))
    assert [element.tag for element in root] == ["Say", "Hangup"]
    assert root.find("Say").text == APOLOGY
    call.refresh_from_db()
    assert call.is_over and call.metadata["reconnects"] == MAX_RECONNECTS
    assert [e["code"] for e in call.metadata["errors"]] == ["64105"] * (MAX_RECONNECTS + 1)
    assert call.metadata["errors"][0]["message"] == "WebSocket ended"


def test_a_failed_session_after_the_caller_hung_up_just_hangs_up(twilio_post, call):
    response = action(twilio_post, "failed", call_status="completed", ErrorCode="39001")
    assert verbs(response) == ["Hangup"]
    call.refresh_from_db()
    assert call.is_over and "reconnects" not in call.metadata
    assert call.metadata["errors"][0]["code"] == "39001"


def test_a_reconnect_reopens_a_call_only_our_socket_had_ended(
    twilio_post, call, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        assert call_ended(call_id=call.pk, source="socket")
        assert verbs(action(twilio_post, "failed", ErrorCode="64105")) == ["Connect"]
    call.refresh_from_db()
    assert call.status == Call.Status.IN_PROGRESS and call.ended_at is None
    assert call.summary_status == Call.SummaryStatus.PENDING and call.summary_requested_at is None
    # The reconnected call's real end asks for its summary again, once.
    with django_capture_on_commit_callbacks() as enqueued_at_the_end:
        assert call_ended(call_id=call.pk, source="socket")
        status(twilio_post, "completed", 5, CallDuration="90")
    call.refresh_from_db()
    assert call.summary_status == Call.SummaryStatus.QUEUED and call.duration_seconds == 90
    assert len(enqueued) == 1 and len(enqueued_at_the_end) == 1


def test_a_call_twilio_reported_over_is_not_reconnected(twilio_post, call):
    status(twilio_post, "completed", 3)
    assert verbs(action(twilio_post, "failed", ErrorCode="64105")) == ["Hangup"]
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED and "reconnects" not in call.metadata


def test_a_relay_action_for_an_unknown_call_hangs_up(twilio_post, db):
    assert verbs(action(twilio_post, "failed")) == ["Hangup"]


# --- handoffs: end, transfer, and the <Dial action> ---------------------------------------------


def handoff(**data: str) -> str:
    return json.dumps(data)


def dial_action(twilio_post, dial_status: str, **extra: str):
    params = {"CallSid": SID, "CallStatus": "in-progress", "DialCallStatus": dial_status, **extra}
    return twilio_post(DIAL_ACTION, {"DialCallSid": "CA" + "7" * 32, **params})


@pytest.fixture
def transferable(call) -> Call:
    Persona.objects.filter(pk=call.persona_id).update(transfer_enabled=True, handoff_number=HUMAN)
    return call


def test_an_end_handoff_just_hangs_up_after_the_agents_goodbye(
    twilio_post, call, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        response = action(twilio_post, "ended", HandoffData=handoff(action="end", reason="caller said bye"))
    assert verbs(response) == ["Hangup"]
    call.refresh_from_db()
    assert call.metadata["handoff"] == {"action": "end", "reason": "caller said bye"}
    assert call.is_over and call.metadata["ended_by"] == "relay-action" and len(enqueued) == 1


def test_an_unknown_handoff_action_gets_the_polite_goodbye(twilio_post, call):
    root = twiml(action(twilio_post, "ended", HandoffData=handoff(action="escalate")))
    assert [element.tag for element in root] == ["Say", "Hangup"]
    assert root.find("Say").text == HANDOFF_GOODBYE


def test_a_transfer_dials_the_personas_handoff_number(
    twilio_post, transferable, django_capture_on_commit_callbacks
):
    data = {"action": "transfer", "reason": "billing dispute", "summary": "Caller disputes a charge."}
    with django_capture_on_commit_callbacks() as enqueued:
        root = twiml(action(twilio_post, "ended", HandoffData=json.dumps(data)))
    assert [element.tag for element in root] == ["Dial"]  # no <Say>: the agent announced it already
    dial = root.find("Dial")
    assert dial.text == HUMAN
    assert dial.get("action") == "https://switchboard.example.com/twilio/dial-action/"
    assert dial.get("timeout") == "25"
    call = Call.objects.get(pk=transferable.pk)
    assert call.metadata["handoff"] == {**data, "transfer_to": HUMAN}
    # The caller is still on the line, now with a person: the call is not over yet.
    assert not call.is_over and call.summary_requested_at is None and enqueued == []


def test_a_transfer_reopens_a_call_only_our_socket_had_ended(
    twilio_post, transferable, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        assert call_ended(call_id=transferable.pk, source="socket")
        response = action(twilio_post, "ended", HandoffData=handoff(action="transfer", reason="asked"))
    assert verbs(response) == ["Dial"]
    call = Call.objects.get(pk=transferable.pk)
    assert call.status == Call.Status.IN_PROGRESS and call.ended_at is None
    assert call.summary_requested_at is None  # asked for again when the transfer ends


def test_a_transfer_without_a_handoff_number_apologises_and_hangs_up(twilio_post, call):
    assert call.persona.handoff_number == ""
    root = twiml(action(twilio_post, "ended", HandoffData=handoff(action="transfer", reason="asked")))
    assert [element.tag for element in root] == ["Say", "Hangup"]
    assert root.find("Say").text == NO_ONE_AVAILABLE
    assert root.find("Dial") is None
    call.refresh_from_db()
    assert call.is_over and call.metadata["handoff"] == {"action": "transfer", "reason": "asked"}


def test_a_transfer_after_the_caller_hung_up_dials_nobody(twilio_post, transferable):
    response = action(
        twilio_post, "ended", call_status="completed", HandoffData=handoff(action="transfer", reason="x")
    )
    assert verbs(response) == ["Hangup"]
    call = Call.objects.get(pk=transferable.pk)
    assert call.is_over and "transfer_to" not in call.metadata["handoff"]


@pytest.mark.parametrize("dial_status", ["busy", "no-answer", "failed", "canceled"])
def test_a_transfer_nobody_took_ends_with_an_apology(
    twilio_post, transferable, dial_status, django_capture_on_commit_callbacks
):
    action(twilio_post, "ended", HandoffData=handoff(action="transfer", reason="asked"))
    with django_capture_on_commit_callbacks() as enqueued:
        root = twiml(dial_action(twilio_post, dial_status, DialCallDuration="0"))
    assert [element.tag for element in root] == ["Say", "Hangup"]
    assert root.find("Say").text == DIAL_APOLOGY
    call = Call.objects.get(pk=transferable.pk)
    assert call.metadata["handoff"] == {
        "action": "transfer",
        "reason": "asked",
        "transfer_to": HUMAN,
        "dial_status": dial_status,
        "dial_duration": 0,
    }
    assert call.is_over and call.metadata["ended_by"] == "dial-action"
    assert call.summary_status == Call.SummaryStatus.QUEUED and len(enqueued) == 1


def test_a_completed_transfer_hangs_up_and_records_how_long_it_lasted(twilio_post, transferable):
    action(twilio_post, "ended", HandoffData=handoff(action="transfer", reason="asked"))
    response = dial_action(twilio_post, "completed", DialCallDuration="312")
    assert verbs(response) == ["Hangup"]
    call = Call.objects.get(pk=transferable.pk)
    assert call.metadata["handoff"]["dial_status"] == "completed"
    assert call.metadata["handoff"]["dial_duration"] == 312
    assert call.is_over


def test_a_dial_action_without_our_handoff_keeps_what_was_stored(twilio_post, call):
    Call.objects.filter(pk=call.pk).update(metadata={"handoff": "free text"})
    dial_action(twilio_post, "no-answer")
    call.refresh_from_db()
    assert call.metadata["handoff"] == {"data": "free text", "dial_status": "no-answer"}


def test_a_dial_action_for_an_unknown_call_hangs_up(twilio_post, db, caplog):
    with caplog.at_level(logging.WARNING, logger="calls.webhooks.transfers"):
        assert verbs(dial_action(twilio_post, "completed")) == ["Hangup"]
    assert "unknown call" in caplog.text
