"""Short recorded phrases as raw 8 kHz mu-law, for tests and the call simulator (see README.md)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
NAMES = ("hello", "interrupt", "thanks")


def clip(name: str) -> bytes:
    """The mu-law bytes of a kept clip, e.g. `clip("hello")`; no headers, 8000 bytes a second."""
    if name not in NAMES:  # also keeps a name from reaching outside this folder
        raise KeyError(f"no clip named {name!r}; have {', '.join(NAMES)}")
    return (_HERE / f"{name}.ulaw").read_bytes()
