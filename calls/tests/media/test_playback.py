"""The playback ledger: what the caller heard, from Twilio's mark echoes and the audio clock."""

from __future__ import annotations

from calls.media.playback import ESTIMATED, PLAYED, PlaybackLedger


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sent(ledger: PlaybackLedger, *phrases: tuple[str, float]) -> list[str]:
    names = []
    for text, ms in phrases:
        name = ledger.next_name()
        ledger.sent(name, text, ms)
        names.append(name)
    return names


def test_echoed_marks_are_heard_whole_and_the_rest_by_playing_time():
    clock = Clock()
    ledger = PlaybackLedger(clock)
    first, second, _ = sent(
        ledger, ("We open at nine,", 1000), (" and close at five", 1000), (" on weekdays.", 800)
    )

    assert ledger.heard().text == "" and ledger.playing
    clock.now += 1.0
    assert ledger.echoed(first)
    clock.now += 0.6  # 60% into the second phrase: "and close" said, "at" barely begun
    heard = ledger.heard()
    assert heard.text == "We open at nine, and close" and heard.confidence == ESTIMATED
    clock.now += 0.4
    assert ledger.echoed(second)
    assert ledger.heard().text == "We open at nine, and close at five"


def test_cleared_marks_echo_back_but_are_never_counted_as_heard():
    clock = Clock()
    ledger = PlaybackLedger(clock)
    first, second = sent(ledger, ("Hello there.", 500), (" How can I help?", 900))
    ledger.echoed(first)

    assert ledger.clear() == [second] and not ledger.playing and ledger.quiet.is_set()
    assert not ledger.echoed(second)  # Twilio echoes pending marks on `clear`
    heard = ledger.heard()
    assert heard.text == "Hello there." and heard.confidence == PLAYED
    assert not ledger.echoed("s99")  # unknown names change nothing


def test_an_echo_credits_every_phrase_before_it_and_a_new_utterance_starts_empty():
    ledger = PlaybackLedger(Clock())
    _, second = sent(ledger, ("One.", 300), (" Two.", 300))
    assert ledger.echoed(second)  # echoes can coalesce: the audio before it has all played
    assert ledger.heard().text == "One. Two." and not ledger.playing
    ledger.new_utterance()
    sent(ledger, ("Three.", 300))
    assert ledger.heard().text == ""
