"""The conversation engine: turn taking, streaming, cancellation and truncation for one call.

It knows nothing about websockets. A transport (the ConversationRelay consumer, a test, another
protocol) feeds it caller events and gives it a `ConversationOutput` to speak through.

Rules it keeps:
- one reply in flight at a time; an interrupt, a newer prompt or a hang-up aborts it at once,
  closes the provider stream, and no token of it is sent afterwards;
- the stored assistant turn holds what was generated (`generated_text`) and what the caller heard
  (`text`); the next request to the model is built from what was heard;
- nothing touches the database between a prompt and its first token: writes are queued;
- a terminal action (end, transfer) waits until its words have been spoken, and is dropped if
  the caller speaks first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from agents import directory
from agents.llm import ProviderError, provider_for, request_for
from agents.llm.base import LLMProvider, ModelRequest, ToolCall, ToolResult, ToolSpec
from agents.llm.history import normalise_history
from agents.models import Persona
from calls.agent.provider import AbortReason, AgentProvider
from calls.engine import handover
from calls.engine.dtmf import DtmfCollector
from calls.engine.events import CallStart
from calls.engine.heard import Heard, heard_prefix
from calls.engine.reply import ReplyStream, SpeechFilter, stream_into
from calls.engine.speech import MarkerDetector, PhraseChunker, SpeechCleaner, SpeechPipeline
from calls.engine.stalls import StallWatch
from calls.engine.timers import Timers
from calls.engine.tool_loop import ToolLoop
from calls.engine.tools import END_CALL, SWITCH_LANGUAGE, TERMINAL, TRANSFER, tool_record, tools_for
from calls.metadata import HANDOFF_ARGUMENTS, ErrorSource, Handoff
from calls.models import Call, Turn
from calls.store.db import DATABASE_DOWN, Batched
from calls.store.lifecycle import SOCKET
from calls.store.offline import call_row_ensure, session_start_offline
from calls.store.recorder import CallRecorder
from calls.store.services import relay_sessions_start

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT = 2.0  # seconds to wait for an aborted reply to unwind

Producer = Callable[[ReplyStream], Awaitable[list[ToolCall]]]


class ConversationOutput(Protocol):
    # The transport cuts the reply into phrases itself (Media Streams' speaker, for its voice):
    # the engine then sends tokens as they come, or each phrase would wait for the next.
    chunks_phrases: bool

    async def send_token(self, token: str, last: bool) -> None: ...
    async def send_language(self, code: str) -> None: ...
    async def send_end(self, handoff_data: str) -> None: ...
    async def hang_up(self) -> None: ...


@dataclass(slots=True)
class TurnState:
    """The in-memory mirror of a stored Turn (the history is read from here, never re-queried)."""

    sequence: int
    role: str
    text: str
    generated_text: str = ""
    interrupted: bool = False
    tool_calls: list[dict] = field(default_factory=list)


@dataclass(slots=True)
class Generation:
    """A reply in flight and the task producing it."""

    reply: ReplyStream
    prompted_at: float
    marker: MarkerDetector | None = None
    then_end: Handoff | None = None  # a closing line: end the call once it is spoken
    follow_up: bool = False  # already a continuation (after a language switch): no further one
    tool_loop: ToolLoop | None = None  # the persona's HTTP tools it called (calls/engine/tool_loop.py)
    task: asyncio.Task[None] = field(init=False)  # started right after, with the generation


@dataclass(slots=True)
class PendingEnd:
    handoff: Handoff
    turn: TurnState | None
    record: dict | None


# Sockets open in bursts: their setups share database hops (calls/store/db.py: Batched).
start_session = Batched(relay_sessions_start, name="relay-session-starts")


class Conversation:
    def __init__(self, output: ConversationOutput) -> None:
        self.output = output
        # Set by `setup` (the `call`, `persona`, `provider` and `recorder` properties).
        self._call: Call | None = None
        self._persona: Persona | None = None
        self._provider: LLMProvider | None = None
        self.turns: list[TurnState] = []
        self._recorder: CallRecorder | None = None
        self.generation: Generation | None = None
        self.language = ""
        self.languages: list[str] = []
        self.tools: list[ToolSpec] = []
        self.keypad = DtmfCollector()
        self.timers = Timers()
        self.idle_reprompts = 0
        self.pending_end: PendingEnd | None = None
        self.ending = False  # `end` was sent: Twilio is taking the call back
        self.closed = False
        self._lock = asyncio.Lock()  # caller events and timers take turns
        self._late_tools: set[asyncio.Task[ToolResult]] = set()  # non-cancellable tools outliving their reply

    @property
    def bound(self) -> bool:
        """`setup` has bound the call."""
        return self._call is not None

    # What `setup` binds. Every event but a hang-up waits for it (`_ready`); used before it, they raise.
    @property
    def call(self) -> Call:
        return _bound(self._call, "call")

    @property
    def persona(self) -> Persona:
        return _bound(self._persona, "persona")

    @property
    def provider(self) -> LLMProvider:
        return _bound(self._provider, "provider")

    @property
    def recorder(self) -> CallRecorder:
        return _bound(self._recorder, "recorder")

    # --- caller events --------------------------------------------------------------------
    async def setup(self, start: CallStart) -> None:
        """Bind to the call (creating it if the voice webhook never ran) and load its history."""
        async with self._lock:
            if self._call is not None:
                logger.warning("call %s: second setup ignored", start.call_sid)
                return
            # One conversation per call: an old socket still on it here stops first, its writes
            # flushed, so the history loaded next is complete.
            taken_here = await handover.take_over_here(start.call_sid)
            try:
                session = await start_session(start)
                # Bound to another session until now, perhaps live in another process: once that
                # one has stopped, the history is read again, with its last writes.
                moved = not taken_here and session.previous_session not in ("", start.session_id)
                moved = moved and not session.call.is_over
                if moved and await handover.take_over_elsewhere(start.call_sid, start.session_id):
                    session = await start_session(start)
            except DATABASE_DOWN as exc:
                logger.error("call %s: database unreachable at setup (%s)", start.call_sid, exc)
                session = await session_start_offline(start)
            self._call, self._persona = session.call, session.call.persona
            self._provider = self._provider_for(self.persona)
            self.turns = [
                TurnState(t.sequence, t.role, t.text, t.generated_text, t.interrupted, t.tool_calls)
                for t in session.turns
            ]
            self.languages = session.languages
            self.language = self.call.metadata.get("language", self.persona.language)
            self.tools = tools_for(self.persona, self.languages)
            self._recorder = CallRecorder(self.call)
            if session.offline:  # the call's row first, then its turns
                call = self.call
                self.recorder.then(lambda: call_row_ensure(call))
            self.timers.prefix = f"call:{start.call_sid}"
            self._arm_time_limit()
            handover.hold(start.call_sid, self)
            logger.info(
                "call %s: session %s bound (%s turns)", start.call_sid, start.session_id, len(self.turns)
            )

    async def prompt(self, text: str) -> None:
        """The caller finished an utterance: answer it."""
        async with self._lock:
            await self._answer(text)

    async def dtmf(self, digit: str) -> None:
        async with self._lock:
            if not self._ready("dtmf"):
                return
            if not self.persona.dtmf_enabled:
                await self._answer(f"The caller pressed {digit}.")
                return
            self.timers.cancel("idle")
            number = self.keypad.add(digit)
            if number:
                self.timers.cancel("keypad")
                await self._answer(_keypad_text(number))
            elif self.keypad.pending:
                self.timers.start("keypad", self.persona.dtmf_pause_seconds, self._on_keypad_pause)

    async def interrupt(
        self, utterance: str = "", duration_ms: float | None = None, *, heard: Heard | None = None
    ) -> None:
        """The caller talked over the agent: stop, and keep only what they heard.

        A transport that knows what was played (Media Streams, from Twilio's mark echoes) passes
        `heard`; otherwise it is estimated from Twilio's `utterance` and `duration_ms`."""
        async with self._lock:
            if not self._ready("interrupt"):
                return
            self._caller_active("the caller interrupted")
            cut = heard if heard is not None else (utterance, duration_ms)
            if self.generation is not None:
                await self._abort_generation(heard=cut, reason="interrupted")
                return
            # The reply had finished streaming, but the caller heard less than was sent.
            last = self.turns[-1] if self.turns else None
            if last is None or last.role != Turn.Role.ASSISTANT or last.interrupted:
                logger.info("call %s: interrupt with no agent turn to truncate", self.call.call_sid)
                return
            self._cut(last, last.generated_text or last.text, cut)
            await self._tell_provider("interrupted", last.text, sent=last.generated_text)

    async def speak(self, line: str) -> None:
        """Say a fixed line as the agent (a transport's apology when its speech provider failed),
        stored and interruptible like any reply; nothing when a reply is already in flight."""
        async with self._lock:
            if self._ready("speak") and self.generation is None:
                self._speak(line)

    def note_error(self, source: ErrorSource, description: str) -> None:
        """Keep a transport's error on the call (shown in the admin), off the token path."""
        if self._recorder is not None:
            self._recorder.note("errors", {"source": source, "description": description[:500]})

    async def relay_error(self, description: str) -> None:
        call_sid = self._call.call_sid if self._call else "(before setup)"
        logger.warning("call %s: ConversationRelay error: %s", call_sid, description)
        self.note_error("relay", description)

    async def close(self) -> None:
        """The socket is gone: abort, store what was sent, mark the call ended, stop every task."""
        await self._stop("ended", "the call ended first")

    async def hand_over(self) -> None:
        """Another socket took the call over (a Twilio reconnect that overlapped this one): stop,
        store what was sent, flush the writes, and hang up this socket. The call goes on there,
        so it is not ended."""
        if await self._stop("handed_over", "another socket took the call over"):
            await self.output.hang_up()

    async def _stop(self, reason: AbortReason, why: str) -> bool:
        """Stop the conversation once; False when it was stopped already. Only an ended call waits
        for its tools that cannot be cancelled: a hand-over would keep the new socket, and the
        caller, waiting on them."""
        async with self._lock:
            if self.closed:
                return False
            self.closed = True
            await self.timers.cancel_all()
            self._drop_pending_end(why)
            await self._abort_generation(heard=None, reason=reason)
            if self._recorder is None:
                return True
            handover.release(self.call.call_sid, self)
            if reason == "ended":
                await self._late_tools_settled()
                self.recorder.end_call(SOCKET)
            await self.recorder.close()
            return True

    # --- turn taking ----------------------------------------------------------------------
    async def _answer(self, text: str) -> None:
        if not self._ready("prompt"):
            return
        if not text.strip():
            logger.info("call %s: empty prompt ignored", self.call.call_sid)
            return
        prompted_at = time.monotonic()
        self._follow_persona_edits()
        self._caller_active("the caller spoke")
        await self._abort_generation(heard=None)
        self._append_turn(Turn.Role.USER, text)
        self._start_generation(prompted_at, self._from_model)

    def _follow_persona_edits(self) -> None:
        """A persona edited since the last reply, in this process or another (agents.directory
        hears of both), answers from the next reply on: its prompt, model and tools."""
        persona = directory.current(self.persona)
        if persona is self.persona:
            return
        self._persona = self.call.persona = persona
        self._provider = self._provider_for(persona)
        self.tools = tools_for(persona, self.languages)
        logger.info("call %s: the persona was edited; the next reply follows the edit", self.call.call_sid)

    def _provider_for(self, persona: Persona) -> LLMProvider:
        """A client-side persona's replies come from its call's agent process (calls/agent/), over
        one provider for the whole call; every other persona's from a model (agents/llm/)."""
        if persona.llm_provider != Persona.LlmProvider.AGENT:
            return provider_for(persona)
        return self._provider if isinstance(self._provider, AgentProvider) else AgentProvider(self)

    async def _tell_provider(self, reason: AbortReason, heard: str, *, sent: str | None = None) -> None:
        """Tell a provider that wants to know (an agent process) why its reply was cut short;
        `sent` names a reply that had finished streaming before the caller cut it."""
        aborting = getattr(self._provider, "aborting", None)
        if aborting is not None:
            await aborting(reason, heard, sent)

    def _caller_active(self, reason: str) -> None:
        """The caller is there: no check-in, and a goodbye they talk over does not hang up."""
        self.idle_reprompts = 0
        self.timers.cancel("idle")
        self._drop_pending_end(reason)

    async def _from_model(self, reply: ReplyStream, *, tools: list[ToolSpec] | None = None) -> list[ToolCall]:
        messages = normalise_history((t.role, t.text) for t in self.turns)
        request = request_for(
            self.persona, messages, system=self._system_prompt(), tools=self.tools if tools is None else tools
        )
        calls = await self._stream_reply(request, reply)
        if calls and (http_tools := {tool.name: tool for tool in directory.http_tools(self.persona)}):
            generation = self.generation
            if generation is not None and generation.reply is reply:
                tool_loop = ToolLoop(
                    http_tools,
                    continue_with=self._stream_reply,
                    filler=self.persona.tool_filler_line,
                    filler_after=lambda r: _until_spoken(r) + self.persona.tool_filler_after_seconds,
                )
                if tool_loop.wants(calls):
                    generation.tool_loop = tool_loop
                    return await tool_loop.run(reply, request, calls)
        return calls

    async def _stream_reply(self, request: ModelRequest, reply: ReplyStream) -> list[ToolCall]:
        # The persona's stall limits end a reply the model stops sending long before the total cap.
        watch = StallWatch(self.persona.first_token_timeout_seconds, self.persona.token_gap_timeout_seconds)
        return await stream_into(self.provider.stream(request), reply, watch)

    def _system_prompt(self) -> str:
        parts = [self.persona.system_prompt]
        if self.persona.end_call_marker:
            parts.append(
                f"When the conversation is over and you have said goodbye, end your reply with "
                f"{self.persona.end_call_marker}"
            )
        if self.language != self.persona.language:
            parts.append(f"The call is now in the language {self.language}: speak only that language.")
        return "\n\n".join(parts)

    # --- generation -----------------------------------------------------------------------
    def _start_generation(
        self,
        prompted_at: float,
        produce: Producer,
        *,
        then_end: Handoff | None = None,
        follow_up: bool = False,
    ) -> None:
        if self.closed or self.generation is not None:
            # One reply in flight, on a live call. Callers abort the current reply first; this
            # catches one that lost a race, like a follow-up after a language switch whose
            # `language` frame was still being sent when a new prompt (or the hang-up) came in.
            why = "the call is over" if self.closed else "another reply is in flight"
            logger.info("call %s: reply not started: %s", self.call.call_sid, why)
            return
        marker = MarkerDetector(self.persona.end_call_marker) if self.persona.end_call_marker else None
        filters: list[SpeechFilter] = [marker] if marker else []
        filters.append(SpeechCleaner(allow_ssml=self.persona.allow_ssml))
        if self.persona.speech_chunking == Persona.Chunking.PHRASE and not self.output.chunks_phrases:
            filters.append(PhraseChunker("phrase"))
        # Tokens go straight to the transport's send_token: one coroutine fewer on every token.
        reply = ReplyStream(partial(self.output.send_token, last=False), SpeechPipeline(*filters))
        generation = Generation(reply, prompted_at, marker, then_end, follow_up)
        generation.task = asyncio.create_task(
            self._generate(generation, produce), name=f"reply:{self.call.call_sid}"
        )
        self.generation = generation

    async def _generate(self, generation: Generation, produce: Producer) -> None:
        reply = generation.reply
        calls: list[ToolCall] = []
        try:
            async with asyncio.timeout(settings.RELAY_REPLY_TIMEOUT_SECONDS):
                calls = await produce(reply)
        except Exception as exc:  # the provider failed, stalled (ReplyStalled) or ran past the cap
            self._note_model_failure(exc)
            if not reply.aborted:
                await self._fall_back(generation)
                return
        if reply.aborted:
            return  # whoever aborted it stores it
        await reply.flush()
        if reply.spoken:
            await self.output.send_token("", True)  # closes the talk cycle; never an empty one
        self.generation = None
        turn = self._store_reply(generation, interrupted=False, has_tools=bool(calls))
        await self._after_reply(generation, turn, calls)

    def _note_model_failure(self, exc: Exception) -> None:
        sequence = len(self.turns)
        if isinstance(exc, TimeoutError) and not str(exc):
            exc = TimeoutError(f"the reply ran past its {settings.RELAY_REPLY_TIMEOUT_SECONDS:g} s cap")
        level = logging.WARNING if isinstance(exc, ProviderError) else logging.ERROR
        logger.log(
            level, "call %s turn %s: model failed: %s", self.call.call_sid, sequence, exc, exc_info=exc
        )
        self.recorder.note("errors", {"source": "model", "turn": sequence, "error": str(exc)[:500]})

    async def _fall_back(self, generation: Generation) -> None:
        """The reply failed: say the persona's fallback line as a reply of its own.

        What the caller already heard ends there, as its own turn (the talk cycle closed), and the
        line follows as a new utterance and turn: never spliced into a sentence, on the wire or in
        the transcript. The next request reads both, merged into one assistant message. Text the
        speech filters still held was never said and is dropped (kept in `generated_text`)."""
        reply = generation.reply
        if reply.spoken:
            await self.output.send_token("", True)  # an interrupt here aborts us and stores it
        self.generation = None
        partial_turn = self._store_reply(generation, interrupted=False, text=reply.spoken_text)
        await self._tell_provider("failed", reply.spoken_text)
        # Nothing said yet: the line is the reply, timed from the caller's prompt as a reply is.
        # A closing line that failed still ends the call once the fallback is said.
        self._speak(
            self.persona.fallback_line,
            then_end=generation.then_end,
            prompted_at=time.monotonic() if partial_turn else generation.prompted_at,
        )

    async def _abort_generation(
        self, *, heard: Heard | tuple[str, float | None] | None, reason: AbortReason = "continued"
    ) -> None:
        """Stop the reply in flight (if any) and store it: truncated to `heard` when the caller
        interrupted, else to what was sent (a newer prompt or a hang-up cut it short). The
        provider is told `reason` once what was heard is known."""
        generation, self.generation = self.generation, None
        if generation is None:
            await self._tell_provider(reason, "")
            return
        generation.reply.abort()
        generation.task.cancel()
        try:
            await asyncio.wait_for(generation.task, CANCEL_TIMEOUT)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just the reply
        except TimeoutError:
            logger.error("call %s: aborted reply did not stop in %ss", self.call.call_sid, CANCEL_TIMEOUT)
        except Exception:
            logger.exception("call %s: aborted reply failed while unwinding", self.call.call_sid)
        turn = self._store_reply(generation, interrupted=True)
        if turn is None:
            await self._tell_provider(reason, "")
            return
        if heard is not None:
            self._cut(turn, turn.generated_text, heard)
        elif (spoken := generation.reply.spoken_text) != turn.generated_text:
            # Speech filters held some text back: keep only what went out. Usually that is a
            # prefix (phrase chunking held the last phrase), and then it is the answer; the
            # matcher, O(n·m) on the event loop, only when cleaning changed the text.
            if turn.generated_text.startswith(spoken):
                self._keep_heard(turn, turn.generated_text, Heard(spoken, 1.0, "sent"))
            else:
                self._truncate(turn, turn.generated_text, spoken, None)
        await self._tell_provider(reason, turn.text)

    def _store_reply(
        self, generation: Generation, *, interrupted: bool, has_tools: bool = False, text: str | None = None
    ) -> TurnState | None:
        """Keep the reply as an assistant turn: `text` is what the caller heard (all of it unless
        given); None when nothing reached the caller."""
        reply = generation.reply
        tool_loop = generation.tool_loop
        if not reply.spoken and not has_tools and not (tool_loop and tool_loop.records):
            return None  # nothing reached the caller: no turn to keep
        turn = self._append_turn(
            Turn.Role.ASSISTANT,
            reply.text if text is None else text,
            generated_text=reply.text,
            interrupted=interrupted,
            first_token_ms=_ms(reply.first_token_at, generation.prompted_at),
            completed_ms=_ms(time.monotonic(), generation.prompted_at),
        )
        if tool_loop is not None and tool_loop.records:
            self._keep_tool_records(turn, tool_loop)
        return turn

    def _keep_tool_records(self, turn: TurnState, tool_loop: ToolLoop) -> None:
        """The HTTP tool calls go on the turn of their reply, ahead of any built-in ones; a call
        still running (not cancellable, its reply cut short) is saved again once it settles."""
        turn.tool_calls.extend(tool_loop.records)
        self._save_tool_calls(turn)
        late = tool_loop.late()
        if late:
            tool_loop.on_late = lambda _record: self._save_tool_calls(turn)
            self._late_tools.update(late)
            for task in late:
                task.add_done_callback(self._late_tools.discard)

    async def _late_tools_settled(self) -> None:
        """Before the call's writes are closed, non-cancellable tools that outlived their reply
        finish (each within its own timeout), so their results are stored."""
        if self._late_tools:
            await asyncio.wait(set(self._late_tools))

    # --- after a reply: tools, closing, silence ---------------------------------------------
    async def _after_reply(
        self, generation: Generation, turn: TurnState | None, calls: list[ToolCall]
    ) -> None:
        end: tuple[Handoff, dict | None] | None = None
        switched = False
        for call in calls:
            if call.name in TERMINAL and end is None:
                record = self._record_tool(
                    turn, tool_record(call, executed=False, result="waiting for the goodbye")
                )
                end = (_handoff(call), record)
            elif call.name == SWITCH_LANGUAGE:
                result = await self._switch_language(str(call.arguments.get("code", "")))
                switched = switched or result.startswith("switched")
                self._record_tool(
                    turn, tool_record(call, executed=result.startswith("switched"), result=result)
                )
            else:
                self._record_tool(turn, tool_record(call, executed=False, result="not available"))
        if end is None and generation.marker is not None and generation.marker.seen:
            marker_call = ToolCall(END_CALL, {"reason": f"the reply ended with {generation.marker.marker}"})
            end = (
                _handoff(marker_call),
                self._record_tool(turn, tool_record(marker_call, executed=False, result="")),
            )
        if end is None and generation.then_end is not None:
            end = (generation.then_end, None)
        if turn is not None and turn.tool_calls:
            self._save_tool_calls(turn)
        if end is not None:
            self._schedule_end(end[0], turn, end[1], generation.reply)
        elif switched and not generation.reply.spoken and not generation.follow_up:
            # The follow-up speaks in the new language; it may not switch again (no loop).
            tools = [tool for tool in self.tools if tool.name != SWITCH_LANGUAGE]
            self._start_generation(time.monotonic(), partial(self._from_model, tools=tools), follow_up=True)
        else:
            self._arm_idle(generation.reply)

    def _record_tool(self, turn: TurnState | None, record: dict) -> dict | None:
        if turn is None:
            return None
        turn.tool_calls.append(record)
        return record

    async def _switch_language(self, code: str) -> str:
        if code not in self.languages:
            return f"not one of this persona's languages: {code!r}"
        if code == self.language:
            return f"switched: already speaking {code}"
        await self.output.send_language(code)
        self.language = code
        self.recorder.set_metadata("language", code)
        return f"switched to {code}"

    def _schedule_end(
        self, handoff: Handoff, turn: TurnState | None, record: dict | None, reply: ReplyStream
    ) -> None:
        """End the session once the caller has heard the goodbye (estimated from its length)."""
        self.pending_end = PendingEnd(handoff, turn, record)
        self.timers.start("end", _until_spoken(reply) + settings.RELAY_END_GRACE_SECONDS, self._send_end)

    async def _send_end(self) -> None:
        async with self._lock:
            pending, self.pending_end = self.pending_end, None
            if pending is None or self.closed:
                return
            self.ending = True
            await self.timers.cancel_all()
            await self.output.send_end(json.dumps(pending.handoff))
            self._settle_tool(pending, executed=True, result=f"{pending.handoff['action']} sent to Twilio")
            logger.info("call %s: session ended by the agent (%s)", self.call.call_sid, pending.handoff)

    def _drop_pending_end(self, reason: str) -> None:
        pending, self.pending_end = self.pending_end, None
        if pending is None:
            return
        self.timers.cancel("end")
        self._settle_tool(pending, executed=False, result=f"not executed: {reason}")
        logger.info("call %s: %s before the call ended; staying on the line", self.call.call_sid, reason)

    def _settle_tool(self, pending: PendingEnd, *, executed: bool, result: str) -> None:
        if pending.record is None or pending.turn is None:
            return
        pending.record.update(executed=executed, result=result)
        self._save_tool_calls(pending.turn)

    def _save_tool_calls(self, turn: TurnState) -> None:
        # Copies: the records change later (a pending end is settled) while the write waits.
        self.recorder.update_turn(turn.sequence, tool_calls=[dict(r) for r in turn.tool_calls])

    def _arm_idle(self, reply: ReplyStream) -> None:
        timeout = self.persona.idle_timeout_seconds
        if timeout and not self.ending and not self.closed:
            self.timers.start("idle", _until_spoken(reply) + timeout, self._on_idle)

    async def _on_idle(self) -> None:
        async with self._lock:
            if self.generation is not None or self.ending or self.closed:
                return
            if self.idle_reprompts < self.persona.idle_max_reprompts:
                self.idle_reprompts += 1
                self._speak(self.persona.idle_reprompt_line)
            else:
                self._speak(self.persona.idle_goodbye_line, then_end={"action": "end", "reason": "idle"})

    def _arm_time_limit(self) -> None:
        limit = self.persona.max_call_seconds
        started_at = self.call.started_at  # set as the session starts; now if it somehow is not
        if limit:
            elapsed = (timezone.now() - started_at).total_seconds() if started_at else 0.0
            self.timers.start("time_limit", max(0.0, limit - elapsed), self._on_time_limit)

    async def _on_time_limit(self) -> None:
        async with self._lock:
            if self.ending or self.closed or self.pending_end is not None:
                return
            self.timers.cancel("idle")
            self.timers.cancel("keypad")
            await self._abort_generation(heard=None, reason="time_limit")
            self._speak(self.persona.max_call_line, then_end={"action": "end", "reason": "max_duration"})

    async def _on_keypad_pause(self) -> None:
        async with self._lock:
            number = self.keypad.flush()
            if number:
                await self._answer(_keypad_text(number))

    def _speak(self, line: str, *, then_end: Handoff | None = None, prompted_at: float | None = None) -> None:
        """Say a fixed line as the agent (check-ins, closing lines, the fallback line),
        interruptible like any reply."""

        async def produce(reply: ReplyStream) -> list[ToolCall]:
            await reply.write(line)
            return []

        self._start_generation(
            time.monotonic() if prompted_at is None else prompted_at, produce, then_end=then_end
        )

    # --- turns ----------------------------------------------------------------------------
    def _append_turn(
        self,
        role: str,
        text: str,
        *,
        generated_text: str = "",
        interrupted: bool = False,
        **timings: int | None,
    ) -> TurnState:
        sequence = self.turns[-1].sequence + 1 if self.turns else 0
        turn = TurnState(sequence, role, text, generated_text, interrupted)
        self.turns.append(turn)
        self.recorder.create_turn(
            sequence=sequence,
            role=role,
            text=text,
            generated_text=generated_text,
            interrupted=interrupted,
            **timings,
        )
        return turn

    def _cut(self, turn: TurnState, sent: str, heard: Heard | tuple[str, float | None]) -> None:
        """Keep what the caller heard of `sent`: given exactly, or estimated from Twilio's words."""
        if isinstance(heard, Heard):
            self._keep_heard(turn, sent, heard)
        else:
            self._truncate(turn, sent, *heard)

    def _truncate(self, turn: TurnState, sent: str, utterance: str, duration_ms: float | None) -> None:
        chars_per_second = settings.RELAY_SPEECH_CHARS_PER_SECOND
        self._keep_heard(turn, sent, heard_prefix(sent, utterance, duration_ms, chars_per_second))

    def _keep_heard(self, turn: TurnState, sent: str, heard: Heard) -> None:
        turn.text, turn.interrupted = heard.text, True
        self.recorder.update_turn(
            turn.sequence, text=heard.text, interrupted=True, heard_confidence=heard.confidence
        )
        logger.info(
            "call %s turn %s: caller heard %s of %s chars (%s, confidence %.2f)",
            self.call.call_sid,
            turn.sequence,
            len(heard.text),
            len(sent),
            heard.method,
            heard.confidence,
        )

    def _ready(self, what: str) -> bool:
        if self._call is None or self.closed or self.ending:
            logger.warning(
                "%s ignored: %s", what, "no setup yet" if self._call is None else "the session is over"
            )
            return False
        return True


def _bound[T](value: T | None, what: str) -> T:
    if value is None:
        raise RuntimeError(f"conversation: {what} used before setup")
    return value


def _ms(at: float | None, since: float) -> int | None:
    return None if at is None else max(0, round((at - since) * 1000))


def _until_spoken(reply: ReplyStream) -> float:
    """Seconds until text-to-speech has likely finished saying what this reply sent."""
    if reply.first_token_at is None:
        return 0.0
    speaking = len(reply.spoken_text) / settings.RELAY_SPEECH_CHARS_PER_SECOND
    return max(0.0, reply.first_token_at + speaking - time.monotonic())


def _keypad_text(number: str) -> str:
    return (
        f"The caller pressed {number}." if len(number) == 1 else f"The caller typed {number} on the keypad."
    )


def _handoff(call: ToolCall) -> Handoff:
    """The handoff data of an end_call or transfer_to_human call: its declared arguments, as text."""
    handoff: Handoff = {"action": "transfer" if call.name == TRANSFER else "end"}
    for key in HANDOFF_ARGUMENTS:
        value = call.arguments.get(key)
        if isinstance(value, str | int | float | bool):
            handoff[key] = str(value)
    return handoff
