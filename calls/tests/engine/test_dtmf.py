"""Keypad digits gathered into numbers."""

from __future__ import annotations

from calls.engine.dtmf import DtmfCollector


def press(collector: DtmfCollector, keys: str) -> list[str | None]:
    return [collector.add(key) for key in keys]


def test_pound_submits_the_digits_typed_so_far():
    collector = DtmfCollector()
    assert press(collector, "4821#") == [None, None, None, None, "4821"]
    assert collector.pending == ""


def test_star_starts_over():
    collector = DtmfCollector()
    assert press(collector, "12*") == [None, None, None]
    assert collector.pending == ""
    assert press(collector, "90#") == [None, None, "90"]


def test_a_pause_is_the_engines_flush():
    collector = DtmfCollector()
    press(collector, "55")
    assert collector.pending == "55"
    assert collector.flush() == "55"
    assert collector.flush() is None
    assert press(collector, "7#") == [None, "7"]


def test_pound_or_a_pause_with_nothing_typed_submits_nothing():
    collector = DtmfCollector()
    assert collector.add("#") is None
    assert press(collector, "3*#") == [None, None, None]
    assert collector.flush() is None


def test_a_fixed_length_number_submits_on_its_last_digit():
    collector = DtmfCollector(max_digits=4)
    assert press(collector, "12345678") == [None, None, None, "1234", None, None, None, "5678"]


def test_keys_that_are_not_digits_are_ignored():
    collector = DtmfCollector()
    assert press(collector, "1wA2") == [None, None, None, None]
    assert collector.add("#") == "12"
