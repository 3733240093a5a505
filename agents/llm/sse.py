"""Server-sent events from a streamed HTTP response, read as bytes.

The providers' SDKs make the request (auth, retries, typed errors) but their typed event objects
cost 55-240 µs a token, and even their line iterator decodes and splits text for every chunk.
This reads the body's byte chunks and splits out whole events: one `split` per chunk and a
`partition` per event, with no decoding until a caller wants an event's data.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable


async def sse_events(read: Callable[[], Awaitable[bytes]]) -> AsyncGenerator[tuple[bytes, bytes]]:
    """(event name, data) for each complete event; the name is b"" when the event has none.

    `read` returns the body's next chunk, b"" at the end (agents/llm/transport.py: body_reader).
    Awaiting it directly, rather than an async iterator of chunks, keeps one generator per token.
    """
    buffer = b""
    while chunk := await read():
        buffer += chunk
        if b"\r" in buffer:  # servers may end lines with CRLF, cut anywhere between two chunks
            buffer = buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in buffer:
            continue
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            parsed = _parse(event)
            if parsed is not None:
                yield parsed


def _parse(event: bytes) -> tuple[bytes, bytes] | None:
    name, data = b"", []
    for line in event.split(b"\n"):
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    return (name, b"\n".join(data)) if data else None
