"""How a turn's tool calls read in the admin transcript: `end_call(reason="…") — executed`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

NOT_EXECUTED = "not executed"


@dataclass(frozen=True)
class ToolCallLine:
    call: str  # name(arguments), as the model asked for it
    executed: bool
    outcome: str  # "executed", or "not executed: why"
    result: str  # what running it returned, when it ran


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _call(name: str, arguments: Any) -> str:
    if isinstance(arguments, dict):
        inside = ", ".join(f"{key}={_value(value)}" for key, value in arguments.items())
    else:
        inside = "" if arguments in (None, "") else _value(arguments)
    return f"{name}({inside})"


def tool_call_line(record: dict[str, Any]) -> ToolCallLine:
    """One stored tool call ({"name", "arguments", "result", "executed"}) for display."""
    if "status" in record:
        return _http_tool_call_line(record)
    executed = bool(record.get("executed"))
    result = str(record.get("result") or "")
    if executed:
        outcome = "executed"
    else:
        # The engine may already word its reason "not executed: …"; don't say it twice.
        why = result.removeprefix(NOT_EXECUTED).lstrip(": ").strip()
        outcome = f"{NOT_EXECUTED}: {why}" if why else NOT_EXECUTED
    return ToolCallLine(
        call=_call(str(record.get("name") or "?"), record.get("arguments")),
        executed=executed,
        outcome=outcome,
        result=result if executed else "",
    )


def _http_tool_call_line(record: dict[str, Any]) -> ToolCallLine:
    """A persona's HTTP tool call ({…, "status", "duration_ms"}: calls/engine/tool_loop.py): its
    status and time taken; its result (or error) is shown whatever the status."""
    status = str(record.get("status") or "?")
    duration = record.get("duration_ms")
    outcome = status if duration is None else f"{status} in {duration} ms"
    return ToolCallLine(
        call=_call(str(record.get("name") or "?"), record.get("arguments")),
        executed=status == "ok",
        outcome=outcome,
        result=str(record.get("result") or ""),
    )


def tool_call_lines(records: Iterable[Any]) -> list[ToolCallLine]:
    return [tool_call_line(record) for record in records or () if isinstance(record, dict)]
