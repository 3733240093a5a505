"""Which agent process answers which call, and the replies in flight between them.

One `AgentHub` per event loop (a server process runs one), with no websocket code: the consumer
(calls/agent/consumer.py) hands it connections and frames, and each call's `AgentProvider`
(calls/agent/provider.py) asks it for a turn and reads the reply's text from it. A call is given
to one agent when its first turn ends and stays with it; a new call goes to the agent with the
fewest live calls; a call whose agent left goes to another at its next turn.

An agent connected to this process serves the calls live in this process only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from agents.llm.base import ChatMessage, ProviderError
from agents.llm.history import CALL_CONNECTED, normalise_history
from agents.models import AgentKey
from calls.agent.wire import HistoryGet, ReplyEnd, ReplyWrite
from calls.engine import handover
from calls.store.db import drain_task, in_db_thread
from voiceproject.log_throttle import LogThrottle, loop_throttle

logger = logging.getLogger(__name__)

DROPS_INTERVAL_SECONDS = 60.0

WireHistory = list[dict[str, str]]


class AgentLink(Protocol):
    """The connection to one agent process (the consumer)."""

    async def send_frame(self, frame: Mapping[str, object]) -> None: ...
    async def hang_up(self, code: int | None = None) -> None: ...


class NoAgentConnected(ProviderError):
    """No agent process can take the turn: the engine speaks the persona's fallback line."""


@dataclass(eq=False, slots=True)
class Agent:
    agent_id: str
    key_name: str
    link: AgentLink
    key_id: int | None = None  # the AgentKey it authenticated with: revoking it closes the socket
    calls: set[str] = field(default_factory=set)
    connected: bool = True
    dropped: int = 0  # writes for aborted, ended or unknown turns


@dataclass(eq=False, slots=True)
class AgentTurn:
    """A reply the agent owes: its text arrives on `deltas`, None when it ended."""

    turn_id: str
    call_sid: str
    agent: Agent
    frame: Mapping[str, object] = field(default_factory=dict)  # the turn.end sent for it
    deltas: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    written: bool = False  # the agent has written some of the reply
    agent_left: bool = False  # ended because the agent disconnected, not by reply.end


class _Spoken(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def text(self) -> str: ...


def wire_history(messages: Iterable[ChatMessage]) -> WireHistory:
    """Messages as the agent gets them: {"role", "text"}, without the placeholder opening a
    history that starts with the greeting (agents/llm/history.py)."""
    out = [{"role": m["role"], "text": m["content"]} for m in messages]
    if out and out[0] == {"role": "user", "text": CALL_CONNECTED}:
        del out[0]
    return out


def history_of(turns: Sequence[_Spoken]) -> WireHistory:
    """A conversation's turns as the caller heard them (an interrupted turn holds what was heard)."""
    return wire_history(normalise_history((t.role, t.text) for t in turns))


def _drops() -> LogThrottle:
    # Late writes are normal (an agent streams on for a moment after a barge-in): each is logged
    # at DEBUG, and one line per interval says how many there were.
    return loop_throttle(
        "agent drops",
        lambda: LogThrottle(
            logger,
            summary="agent socket: %s writes for aborted, ended or unknown turns dropped in the last %s s "
            "from %s agents (%s logged)",
            burst=0,
            interval=DROPS_INTERVAL_SECONDS,
        ),
    )


class AgentHub:
    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, Agent] = {}  # call_sid -> the agent it is assigned to
        self.turns: dict[str, AgentTurn] = {}  # replies in flight, by turn_id
        self.dropped = 0
        self._key_watch: asyncio.Task[None] | None = None
        self._resending: set[asyncio.Task[None]] = set()

    async def _watch_keys(self) -> None:
        """While agents are connected, every AGENT_KEY_RECHECK_SECONDS: close the sockets whose
        key staff revoked since the handshake (in whichever process the admin ran)."""
        while self.agents:
            await asyncio.sleep(settings.AGENT_KEY_RECHECK_SECONDS)
            keys = {agent.key_id for agent in self.agents.values() if agent.key_id is not None}
            try:
                revoked = set(await in_db_thread(_revoked_among, keys)) if keys else set()
            except Exception as exc:  # the database is away: keep the agents, look again later
                logger.warning("agent keys not rechecked: %s", exc)
                continue
            for agent in [a for a in self.agents.values() if a.key_id in revoked]:
                logger.warning("agent %s closed: its key %s was revoked", agent.agent_id, agent.key_name)
                await agent.link.hang_up(4403)

    # --- agents -----------------------------------------------------------------------------
    def connect(self, link: AgentLink, key_name: str, key_id: int | None = None) -> Agent:
        agent = Agent(f"agt_{secrets.token_hex(8)}", key_name, link, key_id)
        self.agents[agent.agent_id] = agent
        if self._key_watch is None or self._key_watch.done():
            self._key_watch = drain_task(self._watch_keys(), name="agent-key-watch")
        logger.info("agent %s connected (key %s); %s connected", agent.agent_id, key_name, len(self.agents))
        return agent

    def disconnect(self, agent: Agent) -> None:
        """The agent left: its replies in flight end there, its calls go to others next turn."""
        agent.connected = False
        self.agents.pop(agent.agent_id, None)
        for call_sid in agent.calls:
            if self.calls.get(call_sid) is agent:
                del self.calls[call_sid]
        for turn in [t for t in self.turns.values() if t.agent is agent]:
            if not turn.written and self.agents:
                # Nothing of it was said yet: another agent answers it, under the same turn id.
                self._resending.add(task := drain_task(self._resend(turn), name="agent-turn-resend"))
                task.add_done_callback(self._resending.discard)
                continue
            turn.agent_left = True
            self._end(turn)
        logger.info(
            "agent %s disconnected (%s live calls, %s writes dropped)",
            agent.agent_id,
            len(agent.calls),
            agent.dropped,
        )
        agent.calls.clear()

    def assign(self, call_sid: str) -> Agent:
        """The call's agent: the one it has while connected, else the least busy one."""
        agent = self.calls.get(call_sid)
        if agent is not None and agent.connected:
            return agent
        if not self.agents:
            raise NoAgentConnected("no agent connected")
        agent = min(self.agents.values(), key=lambda a: len(a.calls))
        agent.calls.add(call_sid)
        self.calls[call_sid] = agent
        logger.info("call %s: assigned to agent %s", call_sid, agent.agent_id)
        return agent

    def release(self, call_sid: str) -> Agent | None:
        """The call is over: it no longer counts against its agent."""
        agent = self.calls.pop(call_sid, None)
        if agent is not None:
            agent.calls.discard(call_sid)
        return agent

    async def tell(self, agent: Agent, frame: Mapping[str, object]) -> None:
        """Send a notice; an agent that has gone is not told (it will not hear of the call again)."""
        if not agent.connected:
            return
        try:
            await agent.link.send_frame(frame)
        except Exception as exc:  # the socket closed under us: its disconnect cleans up
            logger.info("agent %s: %s not sent: %r", agent.agent_id, frame.get("type"), exc)

    # --- turns ------------------------------------------------------------------------------
    async def start_turn(self, call_sid: str, frame: dict[str, object]) -> AgentTurn:
        """Give the call's finished caller turn to its agent (`frame` is the turn.end without its
        turn_id); raise NoAgentConnected when there is none to give it to."""
        agent = self.assign(call_sid)
        turn_id = f"trn_{secrets.token_hex(8)}"
        turn = AgentTurn(turn_id, call_sid, agent, {"type": "turn.end", "turn_id": turn_id, **frame})
        self.turns[turn.turn_id] = turn
        try:
            await agent.link.send_frame(turn.frame)
        except Exception as exc:
            self.finish(turn)
            raise NoAgentConnected(f"agent {agent.agent_id} could not be reached: {exc!r}") from exc
        return turn

    async def _resend(self, turn: AgentTurn) -> None:
        try:
            agent = self.assign(turn.call_sid)
            turn.agent = agent
            await agent.link.send_frame(turn.frame)
            logger.info("call %s: turn %s given to agent %s", turn.call_sid, turn.turn_id, agent.agent_id)
        except Exception as exc:  # none left, or it went too: the reply ends unsaid (the fallback)
            logger.info("call %s: turn %s not resent: %r", turn.call_sid, turn.turn_id, exc)
            turn.agent_left = True
            self._end(turn)

    def finish(self, turn: AgentTurn) -> None:
        """The engine is done with the turn: any later write for it is dropped."""
        if self.turns.get(turn.turn_id) is turn:
            del self.turns[turn.turn_id]

    def write(self, agent: Agent, frame: ReplyWrite) -> None:
        turn = self._turn_of(agent, frame.turn_id, "reply.write")
        if turn is not None and frame.text:
            turn.written = True
            turn.deltas.put_nowait(frame.text)

    def end(self, agent: Agent, frame: ReplyEnd) -> None:
        turn = self._turn_of(agent, frame.turn_id, "reply.end")
        if turn is not None:
            self._end(turn)

    def _end(self, turn: AgentTurn) -> None:
        self.finish(turn)
        turn.deltas.put_nowait(None)

    def _turn_of(self, agent: Agent, turn_id: str, what: str) -> AgentTurn | None:
        turn = self.turns.get(turn_id)
        if turn is not None and turn.agent is agent:
            return turn
        self.dropped += 1
        agent.dropped += 1
        _drops().warn(
            agent.agent_id,
            "agent %s: %s for an aborted, ended or unknown turn %s dropped (%s so far from it)",
            agent.agent_id,
            what,
            turn_id[:40],
            agent.dropped,
        )
        return None

    # --- history ----------------------------------------------------------------------------
    def history(self, agent: Agent, request: HistoryGet) -> dict[str, object]:
        """The answer to history.get: the live conversation, as heard, of a call this agent serves."""
        live = handover.holder(request.call_sid) if request.call_sid in agent.calls else None
        turns: Sequence[_Spoken] | None = getattr(live, "turns", None)
        if turns is None:
            return {
                "type": "error",
                "request_id": request.request_id,
                "message": f"no live call {request.call_sid[:64]!r} assigned to this agent",
            }
        return {
            "type": "history",
            "request_id": request.request_id,
            "call_sid": request.call_sid,
            "history": history_of(turns),
        }


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AgentHub] = weakref.WeakKeyDictionary()


def _revoked_among(key_ids: set[int]) -> list[int]:
    return list(
        AgentKey.objects.filter(pk__in=key_ids, revoked_at__isnull=False).values_list("pk", flat=True)
    )


def agent_hub() -> AgentHub:
    """The running event loop's hub (a process's, where it matters; each test's loop its own)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = AgentHub()
    return hub
