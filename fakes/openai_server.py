"""A fake OpenAI-compatible Chat Completions API on loopback, for tests and benchmarks.

It speaks the real wire format (`chat.completion.chunk` SSE lines ending in `data: [DONE]` for
`stream: true`, a `chat.completion` JSON otherwise), so the real openai SDK is pointed at it with
`base_url` and nothing inside the SDK is patched. It records every request body and headers and,
for each stream, how many tokens went out and whether the client closed it before the end.

Run standalone for the benchmark (it prints the base URL, ending in /v1):
    python -m fakes.openai_server --port 8766 --ttft 0.3 --rate 25 --tokens 50 [--tagged]
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from fakes.base import FakeProviderServer, FakeReply, StreamRecord, run_cli

__all__ = ["ARGUMENT_FRAGMENT", "FakeOpenAI", "FakeReply", "StreamRecord", "main", "sse"]

ARGUMENT_FRAGMENT = 7  # characters of tool arguments per chunk, so clients must reassemble them


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def finish_reason(reply: FakeReply) -> str:
    return "tool_calls" if reply.tools else reply.finish_reason or "stop"


class FakeOpenAI(FakeProviderServer):
    name = "OpenAI"
    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.url}/v1"

    def error_json(self, reply: FakeReply) -> dict:
        error_type = reply.error_type or "server_error"
        return {"error": {"message": "fake failure", "type": error_type, "param": None, "code": None}}

    def reply_json(self, body: dict, reply: FakeReply) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.tokens)}
        if reply.tools:
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": json.dumps(tool.get("input", {}))},
                }
                for tool in reply.tools
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(reply.tokens), "total_tokens": 10},
        }

    def stream_head(self, body: dict) -> dict:
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "system_fingerprint": None,
        }

    def chunk(self, head: dict, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**head, "choices": [choice]})

    def opening_events(self, head: dict) -> Iterator[bytes]:
        yield self.chunk(head, {"role": "assistant", "content": ""})

    def token_event(self, head: dict, token: str) -> bytes:
        return self.chunk(head, {"content": token})

    def error_event(self, head: dict) -> bytes:
        return sse({"error": {"message": "The server is overloaded.", "type": "server_error", "code": None}})

    def closing_events(self, head: dict, reply: FakeReply, tokens_sent: int) -> Iterator[bytes]:
        for index, tool in enumerate(reply.tools):
            yield from self.tool_call_chunks(head, index, tool)
        yield self.chunk(head, {}, finish_reason(reply))
        yield sse("[DONE]")

    def tool_call_chunks(self, head: dict, index: int, tool: dict) -> Iterator[bytes]:
        """As OpenAI streams it: id and name first, then the arguments JSON in fragments."""
        call = {
            "index": index,
            "id": f"call_{next(self._ids)}",
            "type": "function",
            "function": {"name": tool["name"], "arguments": ""},
        }
        yield self.chunk(head, {"tool_calls": [call]})
        arguments = json.dumps(tool.get("input", {}))
        for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
            fragment = {
                "index": index,
                "function": {"arguments": arguments[start : start + ARGUMENT_FRAGMENT]},
            }
            yield self.chunk(head, {"tool_calls": [fragment]})


def main() -> None:
    run_cli(FakeOpenAI, __doc__ or "", port=8766)


if __name__ == "__main__":
    main()
