"""Keypad digits gathered into one number, as a caller types an account number or a PIN.

`#` submits at once and `*` starts over; a pause also submits, but the engine owns that timer
(it calls `flush()` when the caller stops typing), so this stays pure and instant to test.
"""

from __future__ import annotations

DIGITS = frozenset("0123456789")


class DtmfCollector:
    def __init__(self, *, max_digits: int | None = None) -> None:
        self.max_digits = max_digits  # e.g. 4 for a PIN: submit on the last digit, no # needed
        self._digits: list[str] = []

    @property
    def pending(self) -> str:
        """The digits typed so far: while not empty, the engine's pause timer should run."""
        return "".join(self._digits)

    def add(self, digit: str) -> str | None:
        """Take one key; return the completed number when this key completes it."""
        if digit == "#":
            return self.flush()
        if digit == "*":
            self._digits.clear()
        elif digit in DIGITS:
            self._digits.append(digit)
            if self.max_digits is not None and len(self._digits) >= self.max_digits:
                return self.flush()
        return None  # anything else (Twilio also knows w, A-D) is not part of a number

    def flush(self) -> str | None:
        """The number typed so far (None when there is none), and start over."""
        number = self.pending
        self._digits.clear()
        return number or None
