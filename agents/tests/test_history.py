from __future__ import annotations

from agents.llm.history import CALL_CONNECTED, normalise_history


def test_history_alternates_strictly_and_opens_with_the_caller():
    history = normalise_history(
        [
            ("assistant", "Hello, this is Maya."),
            ("user", "Hi"),
            ("user", "I need an appointment"),
            ("assistant", ""),  # interrupted before a word was heard
            ("user", "for Friday"),
            ("assistant", "Friday works."),
            ("assistant", "Anything else?"),
            ("user", "   "),
        ]
    )
    assert history == [
        {"role": "user", "content": CALL_CONNECTED},
        {"role": "assistant", "content": "Hello, this is Maya."},
        {"role": "user", "content": "Hi\nI need an appointment\nfor Friday"},
        {"role": "assistant", "content": "Friday works.\nAnything else?"},
    ]


def test_an_empty_history_stays_empty():
    assert normalise_history([]) == []
