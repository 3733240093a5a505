"""The phone-number filter as settings.LOGGING installs it: on the console handler every logger uses."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from voiceproject.log_filters import MaskPhoneNumbers


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the configured console handler writes, captured."""
    [handler] = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and any(isinstance(f, MaskPhoneNumbers) for f in h.filters)
    ]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_a_number_passed_as_an_argument_is_masked(console):
    logging.getLogger("calls.views").error(
        "call %s to %s refused: %s", "CA" + "f" * 32, "+14155550100", "no persona"
    )
    assert console.getvalue().endswith(
        f"calls.views: call CA{'f' * 32} to +1******0100 refused: no persona\n"
    )


def test_a_number_in_an_exception_is_masked_in_the_traceback(console):
    try:
        raise ValueError("cannot dial +447911123456")
    except ValueError:
        logging.getLogger("calls.webhooks").exception("transfer of call %s failed", 42)
    written = console.getvalue()
    assert "transfer of call 42 failed" in written
    assert "ValueError: cannot dial +44******3456" in written and "7911123456" not in written


def test_sids_durations_and_ids_pass_unchanged(console):
    sid = "CA0123456789abcdef0123456789abcdef"
    logging.getLogger("calls.socket").warning(
        "call %s: reply in %.1f ms, turn %s at %s", sid, 1234.5, 17, 1732012345
    )
    assert console.getvalue().endswith(f"call {sid}: reply in 1234.5 ms, turn 17 at 1732012345\n")


def test_a_line_without_a_number_keeps_its_template_and_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "call %s took %s s", ("CA1", 12), None)
    assert MaskPhoneNumbers().filter(record) is True
    assert (record.msg, record.args) == ("call %s took %s s", ("CA1", 12))
