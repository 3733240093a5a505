"""How long to wait before reconnecting: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2.0 ** 64 already dwarfs any sane maximum; capping the exponent keeps the float finite.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays that double from `initial` up to `maximum` seconds.

    Each delay is drawn uniformly from the upper half of its step ("equal jitter"): agents that lost
    the server together do not all come back in the same instant, yet (below the maximum) each
    delay is at least the one before, so a server that is down is not hammered.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("Backoff needs 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("Backoff.factor must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The longest delay of failed attempt number `attempt` (0 for the first)."""
        return min(self.maximum, self.initial * self.factor ** min(attempt, _MAX_EXPONENT))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retrying after failed attempt number `attempt` (0 for the first)."""
        ceiling = self.ceiling(attempt)
        return (rng or random).uniform(ceiling / 2, ceiling)
