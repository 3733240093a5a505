"""OpenAI-compatible chat models (OpenAI, Hugging Face TGI, Together, vLLM, Ollama, ...) over the
openai SDK's async streaming.

The SDK does the request: auth, retries before the first byte, typed errors. The per-token path
skips the SDK's typed `ChatCompletionChunk` objects (150-200 µs of CPU more per chunk than reading
the raw line; `json.loads` of the line is about 4 µs: bench/openai_chunks.py) and reads the
server-sent events of the same response as bytes (agents/llm/sse.py), up to `data: [DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import aiohttp
import httpx2
import openai

from agents.llm.base import ModelRequest, ProviderError, SharedClient, ToolCall, ToolRound, ToolSpec
from agents.llm.sse import sse_events
from agents.llm.tools import ToolCallAssembler
from agents.llm.transport import TIMEOUT, body_reader, read_to_end, sdk_http_client


class OpenAIProvider(SharedClient):
    @classmethod
    def make_client(cls, *, api_key: str, base_url: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=TIMEOUT,
            max_retries=2,
            http_client=sdk_http_client(openai.DefaultAsyncHttpxClient),
        )

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ToolCall]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [
                {"role": "system", "content": request.system},
                *request.messages,
                *(message for round_ in request.tool_rounds for message in openai_round(round_)),
            ],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": True,
        }
        if request.tools:
            body["tools"] = [openai_tool(tool) for tool in request.tools]
            if not request.tools_allowed:
                body["tool_choice"] = "none"
        try:
            async with self.client.chat.completions.with_streaming_response.create(**body) as response:
                tool_calls = ToolCallAssembler()
                finished = False
                read = body_reader(response.http_response)
                # Closing this generator (the engine's abort) leaves both `async with`s: the
                # stream is closed and no more tokens are paid for.
                async with aclosing(sse_events(read)) as events:
                    async for _, data in events:
                        if data == b"[DONE]":
                            await read_to_end(read)
                            finished = True
                            break
                        chunk = json.loads(data)
                        choices = chunk.get("choices")
                        if not choices:
                            if chunk.get("error"):
                                raise ProviderError(f"OpenAI-compatible stream error: {chunk['error']}")
                            continue  # e.g. a usage-only chunk
                        choice = choices[0]
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            yield text
                        if delta.get("tool_calls"):
                            _add_fragments(tool_calls, delta["tool_calls"])
                        if choice.get("finish_reason"):
                            finished = True  # a server may end without `[DONE]` after this
                if not finished:
                    raise ProviderError("OpenAI-compatible stream ended before [DONE]")
                for call in tool_calls.calls():
                    yield call
        except openai.APIError as exc:
            raise ProviderError(f"OpenAI-compatible model: {exc}") from exc
        except (
            httpx2.HTTPError,
            aiohttp.ClientError,
            TimeoutError,
        ) as exc:  # mid-stream, past the SDK's wrapping
            raise ProviderError(f"OpenAI-compatible stream broke: {exc!r}") from exc
        except json.JSONDecodeError as exc:
            raise ProviderError(f"OpenAI-compatible stream sent a line that is not JSON: {exc}") from exc


def _add_fragments(tool_calls: ToolCallAssembler, fragments: list[dict[str, Any]]) -> None:
    for fragment in fragments:
        # Some servers omit `index` and send each call whole: fall back to its id.
        key = fragment.get("index", fragment.get("id"))
        function = fragment.get("function") or {}
        tool_calls.start(key, id=fragment.get("id") or "", name=function.get("name") or "")
        if function.get("arguments"):
            tool_calls.extend(key, function["arguments"])


def openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def openai_round(round_: ToolRound) -> list[dict[str, Any]]:
    """One tool round as Chat Completions takes it: the assistant message with its `tool_calls`
    (arguments as a JSON string), then a `tool` message with each call's result."""
    calls = [
        {
            "id": r.call.id,
            "type": "function",
            "function": {"name": r.call.name, "arguments": json.dumps(r.call.arguments)},
        }
        for r in round_.results
    ]
    # Chat Completions has no error flag on a tool message: an error says so in its content.
    results = [
        {
            "role": "tool",
            "tool_call_id": r.call.id,
            "content": f"Error: {r.content}" if r.is_error else r.content,
        }
        for r in round_.results
    ]
    return [{"role": "assistant", "content": round_.text or None, "tool_calls": calls}, *results]
