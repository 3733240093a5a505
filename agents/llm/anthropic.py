"""Anthropic Claude over the SDK's async streaming.

The SDK does the request: auth, retries before the first byte, typed errors. The per-token path
skips the SDK's typed event objects (tens of microseconds each) and reads the SSE lines of the
same response directly: only text deltas are decoded, everything else is a string comparison.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref

import anthropic

from agents.llm.base import ChatMessage, ProviderError, ReplyStream
from agents.models import Persona

logger = logging.getLogger(__name__)

# Connect fast or fail over to the fallback line; a reply may take a while to finish.
TIMEOUT = anthropic.Timeout(30.0, connect=5.0)


class AnthropicProvider:
    # One client per event loop: its connection pool belongs to the loop that opened it.
    _shared: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[tuple[str, str], AnthropicProvider]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client

    @classmethod
    def shared(cls, *, api_key: str, base_url: str = "") -> AnthropicProvider:
        per_loop = cls._shared.setdefault(asyncio.get_running_loop(), {})
        key = (api_key, base_url)
        if key not in per_loop:
            client = anthropic.AsyncAnthropic(
                api_key=api_key, base_url=base_url or None, timeout=TIMEOUT, max_retries=2
            )
            per_loop[key] = cls(client)
        return per_loop[key]

    async def stream_reply(
        self, *, persona: Persona, messages: list[ChatMessage], reply: ReplyStream
    ) -> None:
        try:
            async with self.client.messages.with_streaming_response.create(
                model=persona.llm_model,
                max_tokens=persona.max_tokens,
                # No temperature: Anthropic's API version 2026-10-21 (the SDK 2.x default) rejects
                # sampling parameters, and the SDK no longer offers them.
                system=persona.system_prompt,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            ) as response:
                await self._read_events(response, reply)
        except anthropic.APIError as exc:
            raise ProviderError(f"Anthropic: {exc}") from exc
        finally:
            reply.end()

    async def _read_events(self, response, reply: ReplyStream) -> None:  # type: ignore[no-untyped-def]
        event = ""
        async for line in response.iter_lines():
            if reply.aborted:
                return  # leaving the `async with` closes the stream: no more tokens are paid for
            if line.startswith("event: "):
                event = line[7:]
            elif not line.startswith("data: "):
                continue
            elif event == "content_block_delta":
                delta = json.loads(line[6:])["delta"]
                if delta.get("type") == "text_delta":
                    await reply.write(delta["text"])
            elif event == "message_stop":
                return
            elif event == "error":
                raise ProviderError(f"Anthropic stream error: {json.loads(line[6:]).get('error')}")
        if not reply.aborted:
            raise ProviderError("Anthropic stream ended before message_stop")
