"""Twilio's identifiers: a two-letter prefix and 32 hex digits (CA a call, AC an account, MZ a
stream). Checked where they arrive (webhooks, the relay `setup` and media `start` frames), so a
malformed or oversized one is refused there and never reaches a query or a column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

CALL = "CA"
ACCOUNT = "AC"
STREAM = "MZ"
ANY = "[A-Z]{2}"  # a sid whose prefix we don't rely on (ConversationRelay's sessionId)

# Twilio's own API definitions use this pattern (`^CA[0-9a-fA-F]{32}$`); fullmatch, so no
# trailing newline slips through as `$` would allow.
_PATTERNS = {prefix: re.compile(f"{prefix}[0-9a-fA-F]{{32}}") for prefix in (CALL, ACCOUNT, STREAM, ANY)}

# The webhook form fields we check: CallSid is on every request Twilio makes to us, the others
# only on some; an absent optional one is fine, a present malformed one is not.
WEBHOOK_FIELDS: dict[str, tuple[str, bool]] = {
    "CallSid": (CALL, True),
    "AccountSid": (ACCOUNT, False),
    "StreamSid": (STREAM, False),
}


def is_sid(value: object, prefix: str) -> bool:
    """True when `value` is a Twilio sid with this prefix (CALL, ACCOUNT, STREAM or ANY)."""
    return isinstance(value, str) and _PATTERNS[prefix].fullmatch(value) is not None


def shown(value: str) -> str:
    """A refused value as a log line shows it: cut short, so an oversized one can't flood the log."""
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


def sid_problem(name: str, value: str, prefix: str, *, required: bool = True) -> str | None:
    """Why `value` is not a usable sid for field `name`, or None when it is."""
    if not value:
        return f"{name} is required" if required else None
    if not is_sid(value, prefix):
        return f"{name} {shown(value)} is not {prefix if prefix != ANY else 'a Twilio sid'} + 32 hex digits"
    return None


def webhook_sid_problem(params: Mapping[str, str]) -> str | None:
    """The first malformed identifier in a webhook's form (WEBHOOK_FIELDS), or None."""
    for name, (prefix, required) in WEBHOOK_FIELDS.items():
        problem = sid_problem(name, params.get(name, ""), prefix, required=required)
        if problem:
            return problem
    return None
