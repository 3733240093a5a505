from __future__ import annotations

import asyncio
import logging

import pytest

from voiceproject.log_throttle import LogThrottle

SUMMARY = "test: %s bad things in the last %s s from %s sources (%s logged)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock) -> LogThrottle:
    return LogThrottle(logging.getLogger("test.throttle"), summary=SUMMARY, burst=3, interval=60, clock=clock)


def warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "test.throttle" and r.levelno == logging.WARNING
    ]


def test_a_flood_writes_the_burst_then_one_summary_per_interval(throttle, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="test.throttle")
    for n in range(1234):
        throttle.warn(n % 17, "bad thing %s", n)
    assert warnings(caplog) == ["bad thing 0", "bad thing 1", "bad thing 2"]
    held = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(held) == 1231 and held[0].getMessage() == "bad thing 3"  # still there at DEBUG

    clock.now += 60
    throttle.warn("late", "bad thing %s", "late")  # the next one writes the summary, then itself
    assert warnings(caplog)[3:] == [
        "test: 1,234 bad things in the last 60 s from 17 sources (3 logged)",
        "bad thing late",
    ]


def test_a_quiet_interval_writes_no_summary(throttle, clock, caplog):
    for n in range(3):
        throttle.warn("one", "bad thing %s", n)
    clock.now += 61
    throttle.warn("one", "bad thing %s", 3)
    assert warnings(caplog) == ["bad thing 0", "bad thing 1", "bad thing 2", "bad thing 3"]


def test_a_summary_long_after_the_flood_says_how_long_it_covers(throttle, clock, caplog):
    for n in range(5):
        throttle.warn("one", "bad thing %s", n)
    clock.now += 3600
    throttle.flush()
    assert warnings(caplog)[-1] == "test: 5 bad things in the last 3,600 s from 1 sources (3 logged)"


async def test_on_an_event_loop_a_timer_writes_the_summary_when_the_flood_stops(caplog):
    # The real clock and a short interval: the summary must come with no further warning.
    written = asyncio.Event()

    class Done(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "bad things" in record.getMessage():
                written.set()

    logger = logging.getLogger("test.throttle")
    handler = Done()
    logger.addHandler(handler)
    try:
        throttle = LogThrottle(logger, summary=SUMMARY, burst=1, interval=0.05)
        for n in range(4):
            throttle.warn(n, "bad thing %s", n)
        assert throttle.timer is not None  # one timer for the whole throttle, set by the first held back
        await asyncio.wait_for(written.wait(), 5)
    finally:
        logger.removeHandler(handler)
    assert warnings(caplog)[0] == "bad thing 0"
    assert warnings(caplog)[1].startswith("test: 4 bad things in the last ")
    assert warnings(caplog)[1].endswith(" s from 4 sources (1 logged)")
    assert throttle.timer is None and throttle.count == 0
