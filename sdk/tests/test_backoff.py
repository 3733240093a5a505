"""Reconnect delays: doubling, capped, jittered, never shrinking."""

from __future__ import annotations

import random

import pytest

from switchboard_agent import Backoff


def test_ceilings_double_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.ceiling(10_000) == 4.0  # no overflow after a very long outage


def test_delays_are_jittered_within_the_upper_half_and_grow() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0)
    rng = random.Random(11)
    for _ in range(50):
        delays = [backoff.delay(n, rng) for n in range(10)]
        for n, delay in enumerate(delays):
            assert backoff.ceiling(n) / 2 <= delay <= backoff.ceiling(n)
        below_the_cap = delays[:6]  # ceilings 0.5 .. 16: each delay at least the one before
        assert below_the_cap == sorted(below_the_cap)
    assert len({Backoff().delay(3, rng) for _ in range(20)}) > 1  # jitter: agents spread out


@pytest.mark.parametrize(("initial", "maximum", "factor"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)])
def test_nonsense_settings_are_refused(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(initial=initial, maximum=maximum, factor=factor)
