"""The tools a persona's model may call during a call, and how their calls are recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import directory
from agents.llm.base import ToolCall, ToolSpec
from agents.models import Persona

END_CALL = "end_call"
TRANSFER = "transfer_to_human"
SWITCH_LANGUAGE = "switch_language"
TERMINAL = frozenset({END_CALL, TRANSFER})


def tools_for(persona: Persona, languages: Sequence[str]) -> list[ToolSpec]:
    """The tools this persona enables; switch_language only when it has languages to switch to;
    then its active HTTP tools (calls/engine/tool_loop.py runs them)."""
    tools = []
    if persona.end_call_enabled:
        tools.append(
            ToolSpec(
                END_CALL,
                "Hang up once the conversation is over. Say goodbye in the same reply first: "
                "the call ends after your words have been spoken.",
                {
                    "type": "object",
                    "properties": {"reason": {"type": "string", "description": "Why the call is ending."}},
                    "required": ["reason"],
                },
            )
        )
    if persona.transfer_enabled:
        tools.append(
            ToolSpec(
                TRANSFER,
                "Transfer the caller to a human colleague when they ask for a person or you cannot help. "
                "Tell the caller you are transferring them in the same reply.",
                {
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string", "description": "Why a human is needed."},
                        "summary": {"type": "string", "description": "What the colleague should know."},
                    },
                    "required": ["reason", "summary"],
                },
            )
        )
    if len(languages) > 1:
        tools.append(
            ToolSpec(
                SWITCH_LANGUAGE,
                "Switch the language you speak and listen in, when the caller speaks or asks for another "
                "language. Answer in the new language afterwards.",
                {
                    "type": "object",
                    "properties": {"code": {"type": "string", "enum": list(languages)}},
                    "required": ["code"],
                },
            )
        )
    tools.extend(
        ToolSpec(tool.name, tool.description, tool.parameters) for tool in directory.http_tools(persona)
    )
    return tools


def tool_record(call: ToolCall, *, executed: bool, result: str) -> dict[str, Any]:
    """How a tool call is kept on its turn (Turn.tool_calls) and shown in the transcript."""
    return {"name": call.name, "arguments": call.arguments, "executed": executed, "result": result}
