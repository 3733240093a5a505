"""The provider of personas on "Your agent (client-side)": the reply comes from the customer's
agent process over the agent socket, not from a model the server calls.

It keeps the contract of agents/llm providers (`stream(request)` yields text deltas), so the
engine's speech filters, chunking, stall limits and truncation apply unchanged. One is made per
call: it remembers the turn in flight, so that when the engine aborts the reply (`aborting`) the
agent is told why: a newer prompt, a barge-in and what was heard, or the hang-up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Literal, Protocol

from agents.llm.base import ModelRequest, ToolCall
from agents.models import Persona
from calls.agent.hub import AgentTurn, NoAgentConnected, agent_hub, wire_history
from calls.models import Call

logger = logging.getLogger(__name__)

# Why the engine cut a reply short (Conversation._abort_generation and the fallback path).
AbortReason = Literal["continued", "interrupted", "ended", "handed_over", "time_limit", "failed"]


class CallView(Protocol):
    """What the provider reads of its conversation (calls/engine/conversation.py)."""

    @property
    def call(self) -> Call: ...
    @property
    def persona(self) -> Persona: ...
    @property
    def language(self) -> str: ...


class AgentProvider:
    def __init__(self, conversation: CallView) -> None:
        self.conversation = conversation
        # The turn the agent was last asked for, until it ends with reply.end or the agent has
        # been told why it was cut short.
        self.open: AgentTurn | None = None
        # The last reply that ended with reply.end, and its text: the caller may still cut it
        # while it is being spoken (Twilio speaks slower than agents stream).
        self.finished: tuple[AgentTurn, str] | None = None

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ToolCall]:
        """Send the caller's turn to the call's agent and yield its reply's text until reply.end.
        Raises NoAgentConnected when no agent can take it (the engine says the fallback line)."""
        hub = agent_hub()
        if self.open is not None:  # cut short with nobody telling us why: the reply is void
            await self.aborting("failed", "")
        self.finished = None
        messages = request.messages
        text = messages[-1]["content"] if messages and messages[-1]["role"] == "user" else ""
        turn = await hub.start_turn(
            self.call_sid, {"call": self._call_info(), "text": text, "history": wire_history(messages)}
        )
        self.open = turn
        said: list[str] = []
        try:
            while (delta := await turn.deltas.get()) is not None:
                said.append(delta)
                yield delta
            if turn.agent_left and not said:
                raise NoAgentConnected(f"agent {turn.agent.agent_id} disconnected before replying")
            # Complete (by reply.end, or up to where its agent left).
            self.open, self.finished = None, (turn, "".join(said))
        finally:
            hub.finish(turn)

    async def aborting(self, reason: AbortReason, heard: str, sent: str | None = None) -> None:
        """The engine cut the reply short (or the call ended): tell the agent, once. `sent` is
        the text of a reply that had finished streaming when the caller talked over it."""
        hub = agent_hub()
        turn, self.open = self.open, None
        finished, self.finished = self.finished, None
        if turn is None and sent is not None and finished is not None and finished[1] == sent:
            turn = finished[0]  # that reply was the agent's, not a line the engine spoke since
        if reason == "ended":
            agent = hub.release(self.call_sid)
            if agent is not None:
                turn_id = turn.turn_id if turn is not None else None
                await hub.tell(agent, {"type": "call.ended", "call_sid": self.call_sid, "turn_id": turn_id})
            return
        if turn is None:
            return
        if reason == "continued":
            await hub.tell(turn.agent, {"type": "turn.continued", "turn_id": turn.turn_id})
        else:  # a barge-in, or cut for another reason: void, ending at what the caller heard
            await hub.tell(turn.agent, {"type": "bot.interrupted", "turn_id": turn.turn_id, "heard": heard})

    @property
    def call_sid(self) -> str:
        return self.conversation.call.call_sid

    def _call_info(self) -> dict[str, str]:
        call = self.conversation.call
        return {
            "call_sid": call.call_sid,
            "persona": self.conversation.persona.slug,
            "from": call.from_number,
            "to": call.to_number,
            "language": self.conversation.language,
        }
