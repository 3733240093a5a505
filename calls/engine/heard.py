"""What the caller heard of a reply before talking over it.

Twilio's `utteranceUntilInterrupt` is the spoken prefix of the reply, but after text-to-speech:
case, punctuation and spacing differ, "3" may come back as "three", "Dr." as "Doctor", and the
last word may be cut in half. We turn both texts into the same canonical words, align the
utterance against the start of the reply (so a repeated phrase is matched where it was spoken,
not at its first or last occurrence), and cut the reply after the last aligned word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONFIDENT = 0.6  # below this alignment score, estimate from the speaking time instead
CHARS_PER_SECOND = 15.0  # about 150 words a minute, a typical TTS pace

ABBREVIATIONS: dict[str, list[str]] = {
    "dr": ["doctor"],
    "mr": ["mister"],
    "mrs": ["missus"],
    "ms": ["miss"],
    "st": ["street"],
    "ave": ["avenue"],
    "jr": ["junior"],
    "sr": ["senior"],
    "vs": ["versus"],
    "etc": ["et", "cetera"],
    "e.g": ["for", "example"],
    "i.e": ["that", "is"],
    "approx": ["approximately"],
    "min": ["minutes"],
    "mins": ["minutes"],
    "hr": ["hour"],
    "hrs": ["hours"],
    "no": ["no"],
    "&": ["and"],
    "%": ["percent"],
    "+": ["plus"],
    "@": ["at"],
    "=": ["equals"],
}
SYMBOL_WORDS = {
    "%": "percent",
    "&": "and",
    "+": "plus",
    "@": "at",
    "$": "dollars",
    "€": "euros",
    "£": "pounds",
}

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_words(n: int) -> list[str]:
    """English words for a non-negative integer ("105" → one hundred five)."""
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = number_words(n % size) if n % size else []
            return [*number_words(n // size), name, *rest]
    return []  # unreachable


def ordinal_words(n: int) -> list[str]:
    words = number_words(n)
    last = words[-1]
    if last in ORDINALS:
        words[-1] = ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


NUMBER = re.compile(
    r"^(?P<cur>[$€£])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?(?P<suffix>st|nd|rd|th|%|k)?$"
)
TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def chunk_words(chunk: str) -> list[str]:
    """Canonical words for one whitespace-free chunk of text."""
    core = chunk.strip("\"'“”‘’()[]{}!?,;:.…—–-*_").lower()
    if not core:
        return [SYMBOL_WORDS[chunk]] if chunk in SYMBOL_WORDS else []
    key = core.rstrip(".")
    if key in ABBREVIATIONS and (key not in {"no", "st", "min"} or chunk.endswith(".")):
        return list(ABBREVIATIONS[key])
    if match := TIME.match(core):
        hours, minutes = int(match[1]), int(match[2])
        return number_words(hours) + (["o", "clock"] if minutes == 0 else number_words(minutes))
    if match := NUMBER.match(core):
        words = number_words(int(match["int"].replace(",", "")))
        if match["suffix"] in {"st", "nd", "rd", "th"}:
            words = ordinal_words(int(match["int"].replace(",", "")))
        if match["frac"]:
            words += ["point", *(ONES[int(d)] for d in match["frac"])]
        if match["suffix"] == "%":
            words.append("percent")
        if match["suffix"] == "k":
            words.append("thousand")
        if match["cur"]:
            words.append(SYMBOL_WORDS[match["cur"]])
        return words
    words = []
    for part in re.findall(r"[^\W_]+|[%&+@$€£]", core.replace("'", "").replace("’", "")):
        words.extend(
            chunk_words(part) if (part.isdigit() or part in SYMBOL_WORDS) and part != core else [part]
        )
    return words


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    end: int  # offset in the original text just after this word's chunk
    start: int
    literal: bool  # the word is spelled in the text as is (so a half-heard cut can land inside it)


def canonical_words(text: str) -> list[Word]:
    words: list[Word] = []
    for chunk in re.finditer(r"\S+", text):
        canon = chunk_words(chunk.group())
        lowered = chunk.group().lower()
        for word in canon:
            at = lowered.find(word)
            literal = at >= 0
            start = chunk.start() + at if literal else chunk.start()
            words.append(Word(word, chunk.end(), start, literal))
    return words


@dataclass(frozen=True, slots=True)
class Heard:
    """The heard prefix of a reply and how sure we are of it."""

    text: str
    confidence: float
    method: str  # "match", "duration" or "length"; "sent" when the engine knows it exactly


def substitution_cost(heard: str, said: str, *, last: bool) -> float:
    if heard == said:
        return 0.0
    if last and said.startswith(heard):
        return 0.0  # the utterance stopped mid-word
    if heard.rstrip("s") == said.rstrip("s"):
        return 0.25
    return 1.0


def align(utterance: list[str], reply: list[Word]) -> tuple[int, float, bool]:
    """Edit-distance alignment of the utterance against every prefix of the reply.

    Returns (number of reply words heard, cost, whether the last word was only partly heard).
    """
    n = len(utterance)
    m = min(len(reply), 2 * n + 10)  # the heard part cannot be far longer than what was heard
    previous = [float(j) for j in range(m + 1)]
    for i in range(1, n + 1):
        current = [float(i)] + [0.0] * m
        last = i == n
        for j in range(1, m + 1):
            current[j] = min(
                previous[j - 1] + substitution_cost(utterance[i - 1], reply[j - 1].text, last=last),
                previous[j] + 1.0,  # a word heard that was not in the reply
                current[j - 1] + 1.0,  # a reply word missing from the utterance
            )
        previous = current
    best = min(range(m + 1), key=lambda j: (previous[j], j))
    partial = (
        bool(best)
        and utterance[-1] != reply[best - 1].text
        and reply[best - 1].text.startswith(utterance[-1])
    )
    return best, previous[best], partial


def cut_at_boundary(text: str, chars: float) -> str:
    """The longest prefix of `text` up to `chars` characters that ends at a word boundary."""
    if chars >= len(text):
        return text
    cut = text.rfind(" ", 0, int(chars) + 1)
    return text[:cut] if cut > 0 else ""


def heard_prefix(
    reply: str, utterance: str, duration_ms: float | None = None, chars_per_second: float = CHARS_PER_SECOND
) -> Heard:
    """The part of `reply` the caller heard, given Twilio's interrupt fields."""
    spoken = [w.text for w in canonical_words(utterance)]
    if not spoken:
        return Heard("", 1.0 if not duration_ms or duration_ms < 400 else 0.5, "match")
    words = canonical_words(reply)
    count, cost, partial = align(spoken, words)
    confidence = max(0.0, 1.0 - cost / len(spoken))
    if count and confidence >= CONFIDENT:
        last = words[count - 1]
        end = last.start + len(spoken[-1]) if partial and last.literal else last.end
        return Heard(reply[:end], round(confidence, 3), "match")
    if duration_ms:
        return Heard(cut_at_boundary(reply, duration_ms / 1000 * chars_per_second), 0.2, "duration")
    return Heard(cut_at_boundary(reply, len(utterance)), 0.1, "length")
