"""The HTTP tool loop of one reply: run the persona's tools the model called, give their results
back to the model and stream its continuation into the same reply, for at most MAX_TOOL_ROUNDS
rounds (the last request lets the model answer only in words).

While tools run and the agent has stopped speaking, the persona's filler line is said once, into
the same reply: it is part of the talk cycle the caller hears, so it is stored on the same turn
and truncated like any other words when the caller cuts in.

An aborted reply (an interrupt, a newer prompt, a hang-up) cancels its running tools, except
those marked not cancellable (a booking): they run to completion and their records are updated
then (`on_late`). Every call is recorded, as it starts, in `records`, which the engine keeps on
the assistant turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from agents.llm.base import ModelRequest, ToolCall, ToolResult, ToolRound
from agents.models import PersonaTool
from calls.engine.http_tools import ToolStatus, call_http_tool
from calls.engine.reply import ReplyStream

logger = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
# The result a built-in tool (end_call, ...) called beside HTTP tools gets: it is handled as usual
# once the whole reply has been spoken.
DEFERRED_RESULT = "Noted: this takes effect once your reply has been spoken."
CANCELLED_RESULT = "cancelled: the reply was cut short"

Continue = Callable[[ModelRequest, ReplyStream], Awaitable[list[ToolCall]]]


def http_record(call: ToolCall) -> dict[str, Any]:
    """How an HTTP tool call is kept on its turn (Turn.tool_calls), updated as it settles."""
    return {
        "name": call.name,
        "arguments": call.arguments,
        "executed": False,
        "status": ToolStatus.RUNNING.value,
        "result": "",
        "duration_ms": None,
    }


class ToolLoop:
    def __init__(
        self,
        tools: Mapping[str, PersonaTool],
        *,
        continue_with: Continue,
        filler: str,
        filler_after: Callable[[ReplyStream], float],
    ) -> None:
        self.tools = tools
        self.records: list[dict[str, Any]] = []
        # Set by the engine once an aborted reply is stored: called when a non-cancellable tool
        # that outlived its reply settles.
        self.on_late: Callable[[dict[str, Any]], None] | None = None
        self._continue_with = continue_with
        self._filler = filler
        self._filler_after = filler_after
        self._filler_said = False
        self._running: dict[asyncio.Task[ToolResult], tuple[PersonaTool, dict[str, Any], float]] = {}

    def wants(self, calls: list[ToolCall]) -> bool:
        return any(call.name in self.tools for call in calls)

    def late(self) -> list[asyncio.Task[ToolResult]]:
        """The non-cancellable calls still running after their reply was aborted."""
        return [task for task in self._running if not task.done()]

    async def run(self, reply: ReplyStream, request: ModelRequest, calls: list[ToolCall]) -> list[ToolCall]:
        """Run rounds while the model calls HTTP tools; return the other calls (built-in tools),
        for the engine to handle after the reply as it always does."""
        rounds: list[ToolRound] = []
        deferred: list[ToolCall] = []
        text = reply.text  # what the model wrote in this round, before its calls
        for number in range(1, MAX_TOOL_ROUNDS + 1):
            if not self.wants(calls):
                break
            # Some OpenAI-compatible servers send no ids; the round's messages pair calls by id.
            calls = [
                call if call.id else replace(call, id=f"call_{number}_{i}") for i, call in enumerate(calls)
            ]
            results = await self._round(reply, calls, deferred)
            rounds.append(ToolRound(text.strip(), results))
            if reply.aborted:
                return []
            request = replace(request, tool_rounds=tuple(rounds), tools_allowed=number < MAX_TOOL_ROUNDS)
            if reply.text and not reply.text[-1].isspace():
                await reply.write(" ")  # speech holds a space until a word follows it
            start = len(reply.parts)
            calls = await self._continue_with(request, reply)
            text = "".join(reply.parts[start:])
        return deferred + calls

    async def _round(
        self, reply: ReplyStream, calls: list[ToolCall], deferred: list[ToolCall]
    ) -> tuple[ToolResult, ...]:
        runs: list[tuple[ToolCall, asyncio.Task[ToolResult] | None]] = []
        for call in calls:
            tool = self.tools.get(call.name)
            if tool is None:
                deferred.append(call)
                runs.append((call, None))
                continue
            record = http_record(call)
            self.records.append(record)
            task = asyncio.create_task(self._call(tool, call, record), name=f"tool:{call.name}")
            self._running[task] = (tool, record, time.monotonic())
            runs.append((call, task))
        tasks = [task for _, task in runs if task is not None]
        try:
            # asyncio.wait, never gather: cancelling this reply must not cancel every call with it.
            _, pending = await asyncio.wait(tasks, timeout=self._filler_delay(reply))
            if pending:
                await self._say_filler(reply)
                await asyncio.wait(pending)
        except asyncio.CancelledError:
            self._abandon()
            raise
        for task in tasks:
            self._running.pop(task, None)
        return tuple(
            task.result() if task is not None else ToolResult(call, DEFERRED_RESULT) for call, task in runs
        )

    async def _call(self, tool: PersonaTool, call: ToolCall, record: dict[str, Any]) -> ToolResult:
        outcome = await call_http_tool(tool, call)
        record.update(
            executed=True, status=outcome.status.value, result=outcome.result, duration_ms=outcome.duration_ms
        )
        if self.on_late is not None:
            self.on_late(record)
        return ToolResult(call, outcome.result, is_error=outcome.status != ToolStatus.OK)

    def _filler_delay(self, reply: ReplyStream) -> float | None:
        if not self._filler or self._filler_said:
            return None  # wait for the tools, however long they take (each has its timeout)
        return self._filler_after(reply)

    async def _say_filler(self, reply: ReplyStream) -> None:
        if not self._filler or self._filler_said or reply.aborted:
            return
        self._filler_said = True
        if reply.text and not reply.text[-1].isspace():
            await reply.write(" ")
        await reply.write(self._filler)
        await reply.flush()  # a phrase chunker would hold it until the tool's answer otherwise

    def _abandon(self) -> None:
        """The reply was aborted: cancel what may be cancelled; the rest runs on, recorded later."""
        for task, (tool, record, started) in list(self._running.items()):
            if task.done():
                del self._running[task]
            elif tool.cancellable:
                task.cancel()
                del self._running[task]
                duration_ms = round((time.monotonic() - started) * 1000)
                record.update(executed=False, status=ToolStatus.CANCELLED.value, result=CANCELLED_RESULT)
                record["duration_ms"] = duration_ms
            else:
                logger.info("tool %s is not cancellable: it runs to completion", tool.name)
