"""What both Twilio sockets' wire formats share: a frame is one JSON object of bounded size that
names its kind; anything else is a FrameError that says why (the consumer logs, counts and drops it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

MAX_FRAME_CHARS = 64 * 1024  # Twilio's frames are far shorter; anything bigger is not Twilio


class FrameError(ValueError):
    """A frame we cannot use; the message says why, `kind` what it claimed to be (when it said)."""

    kind = ""


def parse_json_frame[T](
    raw: str | bytes | None, kind_key: str, parsers: Mapping[str, Callable[[dict[str, Any]], T]]
) -> T:
    """Decode `raw` and hand it to the parser its `kind_key` field names."""
    if raw is None:
        raise FrameError("empty frame")
    if len(raw) > MAX_FRAME_CHARS:
        raise FrameError(f"frame of {len(raw)} characters is over the {MAX_FRAME_CHARS} limit")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError(f"not a JSON object but {type(data).__name__}")
    kind = data.get(kind_key)
    if not isinstance(kind, str) or not kind:
        raise FrameError(f"no {kind_key}")
    parser = parsers.get(kind)
    if parser is None:
        raise FrameError(f"unknown {kind_key} {kind[:40]!r}")
    try:
        return parser(data)
    except FrameError as exc:
        exc.kind = kind
        raise
