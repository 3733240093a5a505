"""What the caller has heard, from Twilio's audio clock (mediastreams.md §3.2, §5).

Every synthesised chunk goes out as audio followed by a uniquely named `mark`; Twilio echoes a
mark when the audio before it has played. So at a barge-in the played chunks are known exactly,
and only the chunk in progress is estimated, from the time since the previous chunk finished.
`clear` makes Twilio echo every pending mark as well, unplayed: those names are remembered as
cleared so their late echoes are never counted as heard.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from calls.engine.heard import Heard

PLAYED = 0.98  # marks echoed as played: what the caller heard, to the chunk
ESTIMATED = 0.9  # plus words of the chunk in progress, estimated from its playing time


@dataclass(slots=True)
class Segment:
    name: str
    text: str
    audio_ms: float
    sent_at: float
    started_at: float | None = None  # when it began to play: sent, or the previous one finished


class PlaybackLedger:
    """The chunks of the current utterance that were sent, in order, and which of them played."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: deque[Segment] = deque()
        self._played: list[str] = []
        self._cleared: set[str] = set()
        self._count = 0
        self.last_played_at: float | None = None
        self.quiet = asyncio.Event()  # set while nothing sent is waiting to play
        self.quiet.set()

    def next_name(self) -> str:
        self._count += 1
        return f"s{self._count}"

    def sent(self, name: str, text: str, audio_ms: float) -> None:
        now = self._clock()
        segment = Segment(name, text, audio_ms, now)
        if not self._pending:
            # Nothing queued at Twilio: this one starts playing now (or when the last one ended).
            segment.started_at = now
        self._pending.append(segment)
        self.quiet.clear()

    def echoed(self, name: str) -> bool:
        """Twilio echoed `name`: the audio before it has played. False for a cleared or unknown mark."""
        if name in self._cleared:
            self._cleared.discard(name)
            return False
        if not any(s.name == name for s in self._pending):
            return False
        now = self._clock()
        while self._pending:
            segment = self._pending.popleft()
            self._played.append(segment.text)
            if segment.name == name:
                break
        self.last_played_at = now
        if self._pending:
            self._pending[0].started_at = now
        else:
            self.quiet.set()
        return True

    @property
    def playing(self) -> bool:
        """Audio sent and not yet echoed: the caller is hearing the agent."""
        return bool(self._pending)

    def heard(self) -> Heard:
        """What the caller has heard of this utterance: every played chunk, plus the words of the
        one playing now in proportion to its playing time."""
        played = "".join(self._played)
        if not self._pending:
            return Heard(played, PLAYED, "played")
        current = self._pending[0]
        started = current.started_at if current.started_at is not None else current.sent_at
        fraction = (
            min(1.0, max(0.0, (self._clock() - started) * 1000 / current.audio_ms)) if current.audio_ms else 0
        )
        partial = _words_prefix(current.text, fraction)
        return Heard(played + partial, ESTIMATED if partial else PLAYED, "played")

    def clear(self) -> list[str]:
        """`clear` was sent: nothing pending will play. Returns the cleared names."""
        names = [s.name for s in self._pending]
        self._cleared.update(names)
        self._pending.clear()
        self.quiet.set()
        return names

    def new_utterance(self) -> None:
        """The next chunks belong to another reply: what was played before is not its text, nor is
        what the previous reply still has queued at Twilio when its echoes come."""
        self._played = []
        for segment in self._pending:
            segment.text = ""


def _words_prefix(text: str, fraction: float) -> str:
    """The words of `text` spoken by `fraction` of its audio, by their share of its letters. A word
    counts once over half of it was said, so a cut-in on a word's first sound does not credit it."""
    lead = text[: len(text) - len(text.lstrip())]  # the space that joins it to the previous chunk
    words = re.findall(r"\S+\s*", text)
    if not words or fraction <= 0:
        return ""
    total = sum(len(w.strip()) for w in words)
    spoken = fraction * total
    out, said = [], 0.0
    for word in words:
        size = len(word.strip())
        if said + size / 2 > spoken:
            break
        out.append(word)
        said += size
    if not out:
        return ""
    return lead + ("".join(out).rstrip() if len(out) < len(words) else "".join(out))
