"""Speech hygiene and chunking, fed token by token the way a model streams."""

from __future__ import annotations

import random

import pytest

from calls.engine.speech import MarkerDetector, PhraseChunker, SpeechCleaner, SpeechFilter, SpeechPipeline


def run(speech: SpeechFilter, tokens: list[str]) -> list[str]:
    """What each token releases, then what the flush releases."""
    return [speech.feed(token) for token in tokens] + [speech.flush()]


def spoken(speech: SpeechFilter, tokens: list[str]) -> str:
    return "".join(run(speech, tokens))


def splits_at(text: str, at: int) -> list[list[str]]:
    """`text` cut in two at `at`, and in three at `at` and every later position."""
    return [[text[:at], text[at:]]] + [[text[:at], text[at:j], text[j:]] for j in range(at + 1, len(text))]


# --- MarkerDetector --------------------------------------------------------------------------
GOODBYE = "Thanks for calling, goodbye![END_CALL]"


@pytest.mark.parametrize("at", range(len(GOODBYE) + 1))
def test_the_end_marker_is_removed_and_seen_wherever_the_tokens_split(at):
    for tokens in [
        [GOODBYE[:at], GOODBYE[at:]],
        *([GOODBYE[:at], GOODBYE[at:j], GOODBYE[j:]] for j in range(at, len(GOODBYE))),
    ]:
        marker = MarkerDetector()
        outputs = run(marker, tokens)
        assert "".join(outputs) == "Thanks for calling, goodbye!", tokens
        assert marker.seen, tokens
        assert not any("[" in out for out in outputs), tokens


def test_the_marker_in_three_pieces():
    marker = MarkerDetector()
    assert run(marker, ["Bye now. [END", "_CA", "LL]"]) == ["Bye now. ", "", "", ""]
    assert marker.seen


def test_only_a_possible_marker_prefix_is_held_back():
    marker = MarkerDetector()
    assert marker.feed("Room [4") == "Room [4"  # "[4" can never become the marker
    assert marker.feed("] is free [E") == "] is free "
    assert marker.feed("ND") == ""
    assert marker.feed(" of the line]") == "[END of the line]"
    assert marker.flush() == "" and not marker.seen


def test_a_prefix_left_at_the_end_is_spoken_and_text_after_the_marker_is_kept():
    marker = MarkerDetector()
    assert spoken(marker, ["One [END_CALL] two [END_"]) == "One  two [END_"
    assert marker.seen


def test_a_custom_marker():
    marker = MarkerDetector("<<transfer>>")
    assert spoken(marker, ["Connecting you <<tra", "nsfer>>"]) == "Connecting you "
    assert marker.seen


# --- SpeechCleaner: markdown -----------------------------------------------------------------
EMPHASIS = "Say **bold** and _soft_ now."


@pytest.mark.parametrize("at", range(len(EMPHASIS) + 1))
def test_emphasis_markers_are_stripped_wherever_the_tokens_split(at):
    for tokens in splits_at(EMPHASIS, at):
        outputs = run(SpeechCleaner(), tokens)
        assert "".join(outputs) == "Say bold and soft now.", tokens
        assert all(out == "" or out.strip() for out in outputs), tokens


def test_headings_bullets_and_numbered_items_lose_their_markers():
    text = "## Opening hours\n- Monday: nine to five\n* Saturday: *closed*\n+ Sunday\n1. First\n2) Second\n> Quoted\n"
    assert spoken(SpeechCleaner(), [text]) == (
        "Opening hours Monday: nine to five Saturday: closed Sunday First Second Quoted"
    )


LIST = "Hi\n- Apples\n12. Pears"


@pytest.mark.parametrize("at", range(len(LIST) + 1))
def test_line_markers_split_across_tokens(at):
    for tokens in splits_at(LIST, at):
        assert spoken(SpeechCleaner(), tokens) == "Hi Apples Pears", tokens


@pytest.mark.parametrize(
    "text",
    ["-5 degrees outside", "#1 in town", "3.5 stars", "10 apples", "2024 was a year", "#hashtag", "a - b"],
)
def test_what_only_looks_like_a_line_marker_is_kept(text):
    assert spoken(SpeechCleaner(), [text]) == text
    assert spoken(SpeechCleaner(), list(text)) == text


def test_backticks_are_dropped():
    assert spoken(SpeechCleaner(), ["Type `", "yes`", " or ```no```."]) == "Type yes or no."


def test_underscores_inside_words_are_kept_and_emphasis_underscores_are_not():
    tokens = ["Write to user_", "name@example.com about __init__ and _this_", "_"]
    assert spoken(SpeechCleaner(), tokens) == "Write to user_name@example.com about init and this"


LINK = "See [our hours](https://example.com/hours?day=mon) today."


@pytest.mark.parametrize("at", range(len(LINK) + 1))
def test_links_become_their_text_wherever_the_tokens_split(at):
    for tokens in splits_at(LINK, at):
        assert spoken(SpeechCleaner(), tokens) == "See our hours today.", tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Call [**the front desk**](tel:+14155550100) now.", "Call the front desk now."),
        ("A [note] here (really).", "A [note] here (really)."),
        ("A [note] (aside) here.", "A [note] (aside) here."),
        ("Unclosed [bracket at the end", "Unclosed [bracket at the end"),
        ("[first](a) and [second](b)", "first and second"),
    ],
)
def test_links_and_brackets_that_are_not_links(text, expected):
    assert spoken(SpeechCleaner(), [text]) == expected
    assert spoken(SpeechCleaner(), list(text)) == expected


# --- SpeechCleaner: emoji, whitespace, escaping ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Great 🎉! See you 👋🏽 soon.", "Great! See you soon."),
        ("I ❤️ Paris 🇫🇷 and my family 👨‍👩‍👧.", "I Paris and my family."),
        ("Done ✅, next ➡️ step ⭐", "Done, next step"),
        ("Press 1️⃣ for sales.", "Press 1 for sales."),
        ("Café – naïve — “quoted” … 50% off, © Acme™", "Café – naïve — “quoted” … 50% off, © Acme™"),
    ],
)
def test_emoji_are_dropped_and_ordinary_punctuation_and_letters_are_not(text, expected):
    assert spoken(SpeechCleaner(), [text]) == expected
    assert spoken(SpeechCleaner(), list(text)) == expected


def test_spaces_ride_on_the_next_word_and_whitespace_alone_is_never_returned():
    cleaner = SpeechCleaner()
    outputs = run(cleaner, ["\n", "  Hello", " ", "\n\n", "there", "!", "  ", "\n"])
    assert outputs == ["", "Hello", "", "", " there", "!", "", "", ""]


def test_plain_tokens_pass_at_once_and_unchanged():
    tokens = ["Sure", ",", " we", " open", " at", " nine", " o'clock", "."]
    assert run(SpeechCleaner(), tokens) == [*tokens, ""]


def test_angle_brackets_and_ampersands_are_escaped():
    assert spoken(SpeechCleaner(), ["If x < 3 & y", " > 2, call <", "support>"]) == (
        "If x &lt; 3 &amp; y &gt; 2, call &lt;support&gt;"
    )


def test_ssml_passes_through_when_allowed_and_its_tags_are_left_alone():
    tokens = [
        '**Wait** <break time="1s"/',
        '> & say <phoneme alphabet="ipa" ph="tə_ˈmɑ*toʊ">',
        "tomato</phoneme>",
    ]
    assert spoken(SpeechCleaner(allow_ssml=True), tokens) == (
        'Wait <break time="1s"/> & say <phoneme alphabet="ipa" ph="tə_ˈmɑ*toʊ">tomato</phoneme>'
    )


# --- PhraseChunker ---------------------------------------------------------------------------
def words(text: str) -> list[str]:
    """Tokens as models send them: each word with the space before it."""
    first, *rest = text.split(" ")
    return [first, *(f" {word}" for word in rest)]


def test_token_mode_passes_every_token_through():
    tokens = ["Hello", " there", ".", " How", " are", " you", "?"]
    assert run(PhraseChunker("token"), tokens) == [*tokens, ""]


def test_the_first_chunk_goes_out_after_four_words():
    outputs = run(PhraseChunker(), words("Thanks for calling the front desk today"))
    assert outputs == ["", "", "", "", "Thanks for calling the", "", "", " front desk today"]


def test_the_first_chunk_size_is_configurable():
    outputs = run(PhraseChunker(first_words=2), words("Thanks for calling us"))
    assert outputs == ["", "", "Thanks for", "", " calling us"]


def test_the_first_chunk_ends_early_at_any_punctuation():
    outputs = run(PhraseChunker(), words("Sure, let me check."))
    assert [out for out in outputs if out] == ["Sure,", " let me check."]


def test_later_chunks_end_at_sentence_ends():
    chunker = PhraseChunker()
    text = "Hi! We open at nine. Are you free on Monday? Great, see you then!"
    outputs = run(chunker, words(text))
    assert [out for out in outputs if out] == [
        "Hi!",
        " We open at nine.",
        " Are you free on Monday?",
        " Great, see you then!",
    ]


def test_commas_cut_only_once_enough_words_are_waiting():
    chunker = PhraseChunker(clause_words=5)
    text = "Okay. Yes, that works, and the appointment on Tuesday morning, is booked for you."
    assert [out for out in run(chunker, words(text)) if out] == [
        "Okay.",
        " Yes, that works, and the appointment on Tuesday morning,",
        " is booked for you.",
    ]


def test_abbreviations_initials_and_decimals_do_not_end_a_sentence():
    chunker = PhraseChunker(clause_words=50)
    text = (
        "Hello. Dr. Smith and Mrs. Jones of St. Mary's e.g. the U.S. office, i.e. J. R. Tolkien etc. "
        "charge 3.5 dollars. Next"
    )
    assert [out for out in run(chunker, words(text)) if out] == [
        "Hello.",
        " Dr. Smith and Mrs. Jones of St. Mary's e.g. the U.S. office, i.e. J. R. Tolkien etc. charge 3.5 dollars.",
        " Next",
    ]


@pytest.mark.parametrize("ending", ['"Yes."', "(really!)", "Wait...", "Right?!", "Mhm…"])
def test_sentence_ends_inside_quotes_brackets_and_ellipses(ending):
    chunker = PhraseChunker()
    outputs = run(chunker, words(f"Hi. She said {ending} Then"))
    assert [out for out in outputs if out] == ["Hi.", f" She said {ending}", " Then"]


def test_a_sentence_end_waits_for_the_next_token_to_rule_out_a_decimal():
    chunker = PhraseChunker()
    chunker.feed("Fine. It is 3.")
    assert chunker.feed("5") == ""
    assert chunker.feed(" percent. And") == " It is 3.5 percent."


def test_long_runs_without_punctuation_are_cut_at_max_words():
    text = "Ok. one two three four five six seven eight nine ten eleven"
    outputs = run(PhraseChunker(max_words=5), words(text))
    assert outputs[-1] == " eleven"  # the rest comes out at the flush
    assert [out for out in outputs if out] == [
        "Ok.",
        " one two three four five",
        " six seven eight nine ten",
        " eleven",
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_chunks_joined_are_exactly_the_input(size):
    text = "Dr. Who? Yes, Dr. Who, at 3.5 pm. Sure!  Extra  spaces, and\nnewlines stay as sent. End"
    tokens = [text[i : i + size] for i in range(0, len(text), size)]
    assert spoken(PhraseChunker(first_words=3, clause_words=3, max_words=7), tokens) == text


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown chunking mode"):
        PhraseChunker("sentence")


# --- the pipeline ----------------------------------------------------------------------------
def test_the_pipeline_cleans_removes_the_marker_and_chunks():
    marker = MarkerDetector()
    pipeline = SpeechPipeline(marker, SpeechCleaner(), PhraseChunker())
    tokens = [
        "**Sure",
        "!**",
        " I",
        " booked",
        " you",
        " for",
        " *Monday*",
        " 🎉.",
        "\n",
        "- Bye",
        "! [END_",
        "CALL]",
    ]
    outputs = run(pipeline, tokens)
    assert [out for out in outputs if out] == ["Sure!", " I booked you for Monday.", " Bye!"]
    assert marker.seen
    assert outputs[-1] == " Bye!"  # the end of the reply is only known at the flush


def test_the_pipeline_in_token_mode_keeps_token_boundaries():
    pipeline = SpeechPipeline(MarkerDetector(), SpeechCleaner(), PhraseChunker("token"))
    assert run(pipeline, ["Hello", " there", "!", " [END_CALL]"]) == ["Hello", " there", "!", "", ""]


def test_an_unclosed_bracket_holds_speech_back_only_briefly():
    cleaner = SpeechCleaner()
    said = [cleaner.feed(token) for token in ["Note [", *(" word" for _ in range(25))]]
    assert said[0] == "Note"
    assert "".join(said).startswith("Note [ word word")  # released once it cannot be a link
    assert not any(out.strip() == "" and out for out in said)


class CharByChar(SpeechCleaner):
    """The cleaner without its plain-text shortcut: every character through `_drain`."""

    def feed(self, text: str) -> str:
        self._held += text
        return self._drain(final=False)


@pytest.mark.parametrize("allow_ssml", [False, True])
def test_the_plain_text_shortcut_says_exactly_what_the_character_loop_says(allow_ssml):
    pieces = [
        "Hello",
        " world",
        " ",
        "  ",
        "",
        "a b",
        "  two  spaces ",
        "é",
        "\n",
        "- ",
        "1. ",
        "*bold*",
        "_x_",
        "snake_case",
        "[link](http://x)",
        "[",
        "](",
        "<b>",
        " & ",
        "🎉",
        "!",
        ".",
        "日本",
        "\t",
    ]
    rng = random.Random(7)
    for _ in range(400):
        tokens = [rng.choice(pieces) for _ in range(rng.randint(1, 12))]
        fast, slow = SpeechCleaner(allow_ssml=allow_ssml), CharByChar(allow_ssml=allow_ssml)
        assert [fast.feed(t) for t in tokens] + [fast.flush()] == [slow.feed(t) for t in tokens] + [
            slow.flush()
        ], tokens
