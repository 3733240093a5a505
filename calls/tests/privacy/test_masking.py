from __future__ import annotations

import pytest

from calls.privacy.masking import mask_number, mask_phone_numbers


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550198", "+1******0198"),  # country code 1: one digit kept
        ("+447911123456", "+44******3456"),  # two-digit code
        ("+35312345678", "+353****5678"),  # three-digit code
        ("14155550198", "*******0198"),  # no "+": no way to tell the code, only the end stays
        ("+1234", "+****"),
    ],
)
def test_a_number_keeps_its_country_code_and_last_four_digits(number, masked):
    assert mask_number(number) == masked


def test_numbers_in_text_are_masked_wherever_they_are():
    text = "call from +14155550198 to +447911123456, query From=%2B14155550198, bare 4155550198."
    assert mask_phone_numbers(text) == (
        "call from +1******0198 to +44******3456, query From=%2B1******0198, bare ******0198."
    )


@pytest.mark.parametrize(
    "text",
    [
        "call CA0123456789abcdef0123456789abcdef ended",  # a CallSid's hex
        "call CA01234567890123456789012345678901 ended",  # ... even when it is all digits
        "session VX00000000000000000000000000000000",
        "took 1234.5 ms, 0.0123456789012 s",  # durations
        "turn 42 of call 1234567",  # database ids
        "at 1732012345 (1732012345678 ms), stamp 20261122004200",  # Unix and compact timestamps
        "request 550e8400-e29b-41d4-a716-446655440000",  # a UUID's last group
        "+1234567 is too short, +12345678901234567 too long",
    ],
)
def test_what_is_not_a_phone_number_is_left_exactly_as_it_was(text):
    assert mask_phone_numbers(text) == text
