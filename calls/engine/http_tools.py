"""A persona's HTTP tools: call the endpoint for one of the model's tool calls, and turn whatever
happens (an answer, an error status, a timeout, a body that is not the JSON it claims to be) into
a result for the model. A failing tool is the model's to explain to the caller, never silence."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx2

from agents.keys import api_key
from agents.llm.base import ToolCall
from agents.models import PersonaTool

logger = logging.getLogger(__name__)

RESULT_LIMIT = 4000  # characters of a result given to the model and kept on the turn


class ToolStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    RUNNING = "running"  # only while it runs: a record read then says so


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    status: ToolStatus
    result: str  # at most RESULT_LIMIT characters
    duration_ms: int


# One client (its connection pool) per event loop: a pool belongs to the loop that opened it.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _client() -> httpx2.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Redirects are not followed: the Authorization header is for this URL's host only.
        client = _clients[loop] = httpx2.AsyncClient(follow_redirects=False)
    return client


async def call_http_tool(tool: PersonaTool, call: ToolCall) -> ToolOutcome:
    """Call `tool`'s endpoint with the model's arguments: a JSON body for POST, the query string for
    GET. Bounded by the tool's timeout in total; raises only CancelledError."""
    started = time.monotonic()
    headers = {"Accept": "application/json"}
    if tool.auth_header_env:
        # Read at call time, never stored; a server secret is refused (agents/keys.py).
        if value := api_key(tool.auth_header_env):
            headers["Authorization"] = value
        else:
            logger.warning(
                "tool %s: %s is not set; calling it without Authorization", tool.name, tool.auth_header_env
            )
    try:
        async with asyncio.timeout(tool.timeout_seconds):
            if tool.method == PersonaTool.Method.GET:
                response = await _client().get(tool.url, params=_query(call.arguments), headers=headers)
            else:
                response = await _client().post(tool.url, json=call.arguments, headers=headers)
        status, result = _read(response)
    except (TimeoutError, httpx2.TimeoutException):
        status, result = (
            ToolStatus.TIMEOUT,
            f"the tool did not answer within {tool.timeout_seconds:g} seconds",
        )
    except httpx2.HTTPError as exc:
        status, result = ToolStatus.ERROR, f"the tool could not be reached: {exc!r}"
    duration_ms = round((time.monotonic() - started) * 1000)
    if status != ToolStatus.OK:
        logger.warning("tool %s %s after %s ms: %s", tool.name, status, duration_ms, result[:200])
    return ToolOutcome(status, result[:RESULT_LIMIT], duration_ms)


def _query(arguments: dict[str, Any]) -> dict[str, str]:
    """Arguments as query parameters: strings as they are, anything else as JSON (true, 3, [..])."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in arguments.items()}


def _read(response: httpx2.Response) -> tuple[ToolStatus, str]:
    text = response.text
    if response.status_code >= 400:
        return ToolStatus.ERROR, f"HTTP {response.status_code}: {text[:RESULT_LIMIT]}"
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        return ToolStatus.OK, text  # plain text is a fine answer for the model to read
    try:
        data = response.json()
    except ValueError:
        return ToolStatus.ERROR, f"the tool's answer is not valid JSON: {text[:500]!r}"
    # Compact: the result goes to the model as text, and its characters are what is bounded.
    return ToolStatus.OK, json.dumps(data, ensure_ascii=False, separators=(",", ":"))
