from __future__ import annotations

from agents.llm.sse import sse_events


def reader(*parts: bytes):
    """A body reader as transport.body_reader returns: the next chunk, then b"" for ever."""
    remaining = list(parts)

    async def read() -> bytes:
        return remaining.pop(0) if remaining else b""

    return read


async def collect(*parts: bytes) -> list[tuple[bytes, bytes]]:
    return [event async for event in sse_events(reader(*parts))]


async def test_events_split_across_chunks_arrive_whole_and_in_order():
    assert await collect(
        b"event: ping\ndata: {}\n\nevent: content_block_delta\nda",
        b'ta: {"a":1}\n',
        b"\nevent: message_stop\ndata: {}\n\n",
    ) == [(b"ping", b"{}"), (b"content_block_delta", b'{"a":1}'), (b"message_stop", b"{}")]


async def test_nameless_events_comments_and_crlf_lines():
    assert await collect(b": keep-alive\r\n\r\ndata: [DONE]\r\n\r\n") == [(b"", b"[DONE]")]


async def test_a_crlf_cut_between_two_chunks_still_ends_the_event():
    assert await collect(b"data: one\r\n\r", b"\n") == [(b"", b"one")]


async def test_multiline_data_is_joined_and_an_unterminated_event_is_not_emitted():
    assert await collect(b"data: one\ndata: two\n\ndata: cut") == [(b"", b"one\ntwo")]
