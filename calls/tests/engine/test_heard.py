"""The heard-text matcher: what survives text-to-speech, and what happens when nothing matches."""

from __future__ import annotations

import pytest

from calls.engine.heard import CONFIDENT, canonical_words, heard_prefix, number_words

REPLY = "Life is a complex set of interactions, and 3 of them matter most."


def test_an_exact_prefix_is_heard_with_full_confidence():
    heard = heard_prefix(REPLY, "Life is a complex set of", 1200)
    assert (heard.text, heard.confidence, heard.method) == ("Life is a complex set of", 1.0, "match")


def test_the_utterance_may_end_mid_word():
    assert heard_prefix(REPLY, "Life is a compl", 900).text == "Life is a compl"


@pytest.mark.parametrize(
    "utterance",
    [
        "life IS a complex,   set of interactions and",
        "Life is a complex set of interactions... and",
        "life is a complex set of interactions and",
    ],
)
def test_case_punctuation_and_whitespace_do_not_matter(utterance):
    heard = heard_prefix(REPLY, utterance, 2000)
    assert heard.text == "Life is a complex set of interactions, and"
    assert heard.confidence == 1.0


def test_digits_in_the_reply_match_words_in_the_utterance():
    heard = heard_prefix(REPLY, "Life is a complex set of interactions, and three of", 3000)
    assert heard.text == "Life is a complex set of interactions, and 3 of"


def test_words_in_the_reply_match_digits_in_the_utterance():
    reply = "Your total is twenty five dollars, due on the first of May."
    assert heard_prefix(reply, "Your total is $25, due on the 1st", 2500).text == (
        "Your total is twenty five dollars, due on the first"
    )


@pytest.mark.parametrize(
    ("reply", "utterance", "expected"),
    [
        (
            "Please see Dr. Patel at 2:30 today.",
            "Please see Doctor Patel at two thirty",
            "Please see Dr. Patel at 2:30",
        ),
        ("Bring ID, e.g. a passport or licence.", "Bring ID, for example a", "Bring ID, e.g. a"),
        ("It is 15% off & free delivery.", "It is fifteen percent off and", "It is 15% off &"),
    ],
)
def test_abbreviations_symbols_and_times_are_spoken_forms(reply, utterance, expected):
    assert heard_prefix(reply, utterance, 2000).text == expected


def test_a_repeated_phrase_is_matched_where_it_was_spoken_from_the_start():
    reply = "I can help with that. I can help with that today, and I can help tomorrow."
    heard = heard_prefix(reply, "I can help with that. I can help", 2500)
    assert heard.text == "I can help with that. I can help"


def test_a_small_transcription_slip_still_matches_with_lower_confidence():
    heard = heard_prefix(
        "We close at five on weekdays and noon on Saturdays.", "We close at five on weak days and", 2500
    )
    assert heard.method == "match" and CONFIDENT <= heard.confidence < 1.0
    assert heard.text.startswith("We close at five on weekdays")


def test_no_match_falls_back_to_the_speaking_time_with_low_confidence():
    heard = heard_prefix(REPLY, "completely unrelated words here", 1000)
    assert heard.method == "duration" and heard.confidence < CONFIDENT
    assert REPLY.startswith(heard.text) and heard.text == "Life is a"  # ~15 characters a second, whole words


def test_no_match_and_no_duration_falls_back_to_the_utterance_length():
    heard = heard_prefix(REPLY, "zzz yyy xxx", None)
    assert heard.method == "length" and heard.confidence < 0.2 and REPLY.startswith(heard.text)


def test_nothing_heard_keeps_nothing():
    assert heard_prefix(REPLY, "", 150).text == ""


def test_number_words():
    assert number_words(0) == ["zero"]
    assert number_words(105) == ["one", "hundred", "five"]
    assert number_words(2026) == ["two", "thousand", "twenty", "six"]
    assert [w.text for w in canonical_words("1,250.5")] == [
        "one",
        "thousand",
        "two",
        "hundred",
        "fifty",
        "point",
        "five",
    ]
