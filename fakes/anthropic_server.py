"""A fake Anthropic Messages API on loopback, for tests and benchmarks.

It speaks the real wire format (SSE events for `stream: true`, a message JSON otherwise), so the
real anthropic SDK is pointed at it with ANTHROPIC_BASE_URL and nothing inside the SDK is patched.
It records every request body and, for each stream, how many tokens went out and whether the
client closed it before the end (what an interrupt must do).

Run standalone for the benchmark:
    python -m fakes.anthropic_server --port 8765 --ttft 0.3 --rate 25 --tokens 50 [--tagged]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fakes.base import FakeProviderServer, FakeReply, StreamRecord, run_cli

__all__ = ["FakeAnthropic", "FakeReply", "StreamRecord", "main", "sse"]


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def stop_reason(reply: FakeReply) -> str:
    return "tool_use" if reply.tools else reply.stop_reason or "end_turn"


class FakeAnthropic(FakeProviderServer):
    name = "Anthropic"
    path = "/v1/messages"

    def error_json(self, reply: FakeReply) -> dict:
        error = {"type": reply.error_type or "api_error", "message": "fake failure"}
        return {"type": "error", "error": error}

    def reply_json(self, body: dict, reply: FakeReply) -> dict:
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(reply.tokens)}]
        for tool in reply.tools:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{next(self._ids)}",
                    "name": tool["name"],
                    "input": tool.get("input", {}),
                }
            )
        return {
            "id": f"msg_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": stop_reason(reply),
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": len(reply.tokens)},
        }

    def stream_head(self, body: dict) -> dict:
        """The message as `message_start` announces it: no content and no stop reason yet."""
        return {**self.reply_json(body, FakeReply(tokens=[])), "content": [], "stop_reason": None}

    def opening_events(self, head: dict) -> Iterator[bytes]:
        yield sse("message_start", {"type": "message_start", "message": head})
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        yield sse("content_block_start", block)

    def token_event(self, head: dict, token: str) -> bytes:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}}
        return sse("content_block_delta", delta)

    def error_event(self, head: dict) -> bytes:
        return sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    def closing_events(self, head: dict, reply: FakeReply, tokens_sent: int) -> Iterator[bytes]:
        yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        for index, tool in enumerate(reply.tools, start=1):
            yield from self.tool_use_events(index, tool)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason(reply), "stop_sequence": None}}
        yield sse("message_delta", {**delta, "usage": {"output_tokens": tokens_sent}})
        yield sse("message_stop", {"type": "message_stop"})

    def tool_use_events(self, index: int, tool: dict) -> Iterator[bytes]:
        block = {"type": "tool_use", "id": f"toolu_{next(self._ids)}", "name": tool["name"], "input": {}}
        yield sse(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )
        partial = json.dumps(tool.get("input", {}))
        delta = {"type": "input_json_delta", "partial_json": partial}
        yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})


def main() -> None:
    run_cli(FakeAnthropic, __doc__ or "", port=8765)


if __name__ == "__main__":
    main()
