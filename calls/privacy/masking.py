"""Phone numbers made unreadable but still recognisable: `+14155550198` → `+1******0198`.

Enough is kept (country code, last four digits) for an operator to tell two callers apart or
match a complaint to a log line, not enough to call anyone back.
"""

from __future__ import annotations

import re

# ITU country codes of one and two digits; every other code has three. Kept visible: they say
# where a call came from, not who made it.
_ONE_DIGIT_CODES = {"1", "7"}
_TWO_DIGIT_CODES_LISTED = (  # as text, to be read against the ITU list at a glance
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98"
)
_TWO_DIGIT_CODES = frozenset(_TWO_DIGIT_CODES_LISTED.split())
LAST_DIGITS_KEPT = 4

_EIGHT_DIGITS = re.compile(r"\d{8}")  # the least either pattern needs
# "+" (or "%2B", URL-encoded in a logged query string) and 8 to 15 digits: E.164. Not after a
# letter or digit, nor followed by a digit: a longer run is no phone number.
_E164 = re.compile(r"(?<![\w+])(\+|%2[Bb])(\d{8,15})(?!\d)")
# A bare run of 10 to 15 digits, on its own: not part of a word (a CallSid's hex), a decimal
# (a duration) or a dashed group (a UUID's last part).
_BARE = re.compile(r"(?<![\w.+\-])(\d{10,15})(?![\w\-]|\.\d)")


def country_code_length(digits: str) -> int:
    if digits[:1] in _ONE_DIGIT_CODES:
        return 1
    return 2 if digits[:2] in _TWO_DIGIT_CODES else 3


def mask_number(number: str) -> str:
    """One number, masked: `+14155550198` → `+1******0198`; without a "+", only the last 4 stay."""
    plus = "+" if number.startswith("+") else ""
    digits = re.sub(r"\D", "", number)
    if len(digits) <= LAST_DIGITS_KEPT:
        return plus + "*" * len(digits)
    kept = min(country_code_length(digits), len(digits) - LAST_DIGITS_KEPT - 1) if plus else 0
    hidden = len(digits) - kept - LAST_DIGITS_KEPT
    return plus + digits[:kept] + "*" * hidden + digits[-LAST_DIGITS_KEPT:]


def _looks_like_a_timestamp(digits: str) -> bool:
    # No phone number has these shapes: a 10-digit national number never starts with 1 (NANP
    # area codes start at 2) and country code 1 numbers have 11 digits, so 10 or 13 digits from a
    # 1 are Unix seconds or milliseconds; no country code starts with 19, nor has Egypt's (20)
    # 14 digits, so 14 digits from 19 or 20 are a compact date and time (20261122004200).
    return (len(digits) in (10, 13) and digits[0] == "1") or (
        len(digits) == 14 and digits[:2] in ("19", "20")
    )


def _mask_e164(match: re.Match[str]) -> str:
    prefix, digits = match.groups()
    return prefix + mask_number("+" + digits)[1:]


def _mask_bare(match: re.Match[str]) -> str:
    digits = match.group(1)
    return digits if _looks_like_a_timestamp(digits) else mask_number(digits)


def mask_phone_numbers(text: str) -> str:
    """`text` with every phone number in it masked; anything else left exactly as it was."""
    if not _EIGHT_DIGITS.search(text):
        return text  # most log lines: one quick scan, no substitution
    return _BARE.sub(_mask_bare, _E164.sub(_mask_e164, text))
