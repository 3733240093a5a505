"""Anthropic Claude over the SDK's async streaming.

The SDK does the request: auth, retries before the first byte, typed errors. The per-token path
skips the SDK's typed event objects (55-100 µs each) and reads the server-sent events of the same
response as bytes (agents/llm/sse.py): an event's name is compared as bytes, and only the events
we act on are decoded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from json.decoder import scanstring  # type: ignore[attr-defined]  # json's own scanner; not in typeshed
from typing import Any

import aiohttp
import anthropic
import httpx2
from django.conf import settings

from agents.llm.base import ModelRequest, ProviderError, SharedClient, ToolCall, ToolRound, ToolSpec
from agents.llm.sse import sse_events
from agents.llm.tools import ToolCallAssembler
from agents.llm.transport import TIMEOUT, body_reader, read_to_end, sdk_http_client

logger = logging.getLogger(__name__)


class AnthropicProvider(SharedClient):
    @classmethod
    def make_client(cls, *, api_key: str, base_url: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=TIMEOUT,
            max_retries=2,
            http_client=sdk_http_client(anthropic.DefaultAsyncHttpxClient),
            # The SDK's OpenTelemetry spans cost about half a millisecond of CPU a request even
            # with no tracer configured: opt in with ANTHROPIC_OPEN_TELEMETRY=true.
            open_telemetry=None if settings.ANTHROPIC_OPEN_TELEMETRY else False,
        )

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ToolCall]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            # No temperature: Anthropic's API version 2026-10-21 (the SDK 2.x default) rejects
            # sampling parameters, and the SDK no longer offers them.
            "system": request.system,
            "messages": anthropic_messages(request) if request.tool_rounds else request.messages,
            "stream": True,
        }
        if request.tools:
            body["tools"] = [anthropic_tool(tool) for tool in request.tools]
            if not request.tools_allowed:
                body["tool_choice"] = {"type": "none"}
        try:
            async with self.client.messages.with_streaming_response.create(**body) as response:
                tool_calls = ToolCallAssembler()
                read = body_reader(response.http_response)
                # Closing this generator (the engine's abort) leaves both `async with`s: the
                # stream is closed and no more tokens are paid for.
                async with aclosing(sse_events(read)) as events:
                    async for event, data in events:
                        if event == b"content_block_delta":
                            text = text_delta(data)
                            if text is not None:
                                yield text
                                continue
                            payload = json.loads(data)
                            delta = payload["delta"]
                            if delta["type"] == "text_delta":
                                yield delta["text"]
                            elif delta["type"] == "input_json_delta":
                                tool_calls.extend(payload["index"], delta["partial_json"])
                        elif event == b"content_block_start":
                            payload = json.loads(data)
                            block = payload["content_block"]
                            if block.get("type") == "tool_use":
                                tool_calls.start(payload["index"], id=block["id"], name=block["name"])
                        elif event == b"content_block_stop":
                            tool_calls.finish(json.loads(data)["index"])
                        elif event == b"message_stop":
                            await read_to_end(read)
                            for call in tool_calls.calls():
                                yield call
                            return
                        elif event == b"error":
                            raise ProviderError(f"Anthropic stream error: {json.loads(data).get('error')}")
                raise ProviderError("Anthropic stream ended before message_stop")
        except anthropic.APIError as exc:
            raise ProviderError(f"Anthropic: {exc}") from exc
        except (
            httpx2.HTTPError,
            aiohttp.ClientError,
            TimeoutError,
        ) as exc:  # mid-stream, past the SDK's wrapping
            raise ProviderError(f"Anthropic stream broke: {exc!r}") from exc
        except (json.JSONDecodeError, KeyError) as exc:
            raise ProviderError(f"Anthropic stream sent an event it does not document: {exc!r}") from exc


# How the API writes a text delta: compact JSON, `text` last. Every token of every reply comes in
# one, so its text is read with the JSON string scanner alone (1.4 µs) instead of json.loads
# (6.7 µs, measured here); anything else takes json.loads.
_TEXT_DELTA = '"delta":{"type":"text_delta","text":"'


def text_delta(data: bytes) -> str | None:
    """The text of a `content_block_delta` event's text delta written as the API writes it."""
    event = data.decode()
    at = event.find(_TEXT_DELTA)
    if at < 0:
        return None
    try:
        text, end = scanstring(event, at + len(_TEXT_DELTA))
    except ValueError:
        return None
    return text if event[end:] == "}}" else None


def anthropic_tool(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def anthropic_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The history, then each tool round: the assistant's text and tool_use blocks, then a user
    message of their tool_result blocks (the Messages API's format for tool use)."""
    messages: list[dict[str, Any]] = [dict(message) for message in request.messages]
    for round_ in request.tool_rounds:
        messages.extend(anthropic_round(round_))
    return messages


def anthropic_round(round_: ToolRound) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": round_.text}] if round_.text.strip() else []
    content.extend(
        {"type": "tool_use", "id": r.call.id, "name": r.call.name, "input": r.call.arguments}
        for r in round_.results
    )
    results = [
        {"type": "tool_result", "tool_use_id": r.call.id, "content": r.content, "is_error": r.is_error}
        for r in round_.results
    ]
    return [{"role": "assistant", "content": content}, {"role": "user", "content": results}]
