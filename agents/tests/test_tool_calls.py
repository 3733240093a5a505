"""Reassembling streamed tool-call fragments, whatever the provider."""

from __future__ import annotations

import pytest

from agents.llm.base import ProviderError, ToolCall
from agents.llm.tools import ToolCallAssembler


def test_fragments_are_joined_per_key_and_calls_keep_their_starting_order():
    tools = ToolCallAssembler()
    tools.start(1, id="call_b", name="get_weather")
    tools.start(0, id="call_a", name="lookup")
    tools.extend(1, '{"ci')
    tools.extend(0, '{"q": ')
    tools.extend(1, 'ty": "Paris"}')
    tools.extend(0, '"hours"}')

    assert tools.calls() == [
        ToolCall(name="get_weather", arguments={"city": "Paris"}, id="call_b"),
        ToolCall(name="lookup", arguments={"q": "hours"}, id="call_a"),
    ]


def test_a_repeated_id_and_name_are_kept_not_concatenated():
    tools = ToolCallAssembler()
    tools.start(0, id="call_a", name="end_call")
    tools.start(0, id="call_a", name="end_call")
    tools.start(0)

    assert tools.calls() == [ToolCall(name="end_call", arguments={}, id="call_a")]


def test_finish_parses_at_once_and_ignores_keys_that_are_not_tool_calls():
    tools = ToolCallAssembler()
    tools.finish(0)  # a text block ending
    tools.start(1, id="t1", name="transfer")
    tools.extend(1, '{"to": "sales"}')
    tools.finish(1)
    tools.extend(1, "garbage after the block ended is never parsed")

    assert tools.calls() == [ToolCall(name="transfer", arguments={"to": "sales"}, id="t1")]


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("get_weather", '{"city": "Par', "not JSON"),
        ("get_weather", '["Paris"]', "not a JSON object"),
        ("", "{}", "no name"),
    ],
    ids=["truncated-json", "not-an-object", "no-name"],
)
def test_broken_calls_are_provider_errors(name, arguments, error):
    tools = ToolCallAssembler()
    tools.start(0, id="call_a", name=name)
    tools.extend(0, arguments)

    with pytest.raises(ProviderError, match=error):
        tools.calls()
