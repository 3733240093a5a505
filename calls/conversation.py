"""The conversation engine: turn taking, streaming, cancellation and truncation for one call.

It knows nothing about websockets. A transport (the ConversationRelay consumer, a test, another
protocol) feeds it caller events and gives it a `ConversationOutput` to speak through.

Rules it keeps:
- one reply in flight at a time; an interrupt, a newer prompt or a hang-up aborts it at once,
  closes the provider stream, and no token of it is sent afterwards;
- the stored assistant turn holds what was sent (`generated_text`) and what the caller heard
  (`text`); the next request to the model is built from what was heard;
- nothing touches the database between a prompt and its first token: writes are queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from django.utils import timezone

from agents.llm import ProviderError, ReplyStream, provider_for
from agents.llm.base import LLMProvider
from agents.llm.history import normalise_history
from agents.models import Persona
from calls.heard import heard_prefix
from calls.lifecycle import acall_ended
from calls.models import Call, Turn
from calls.recorder import CallRecorder

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT = 2.0  # seconds to wait for an aborted reply to unwind


class ConversationOutput(Protocol):
    async def send_token(self, token: str, last: bool) -> None: ...


@dataclass(slots=True)
class TurnState:
    """The in-memory mirror of a stored Turn (the history is read from here, never re-queried)."""

    sequence: int
    role: str
    text: str
    generated_text: str = ""
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class CallStart:
    call_sid: str
    session_id: str = ""
    from_number: str = ""
    to_number: str = ""
    direction: str = "inbound"
    custom_parameters: dict = field(default_factory=dict)


@dataclass(slots=True)
class Generation:
    """A reply in flight and the task producing it."""

    reply: ReplyStream
    prompted_at: float
    task: asyncio.Task | None = None


class Conversation:
    def __init__(self, output: ConversationOutput) -> None:
        self.output = output
        self.call: Call | None = None
        self.persona: Persona | None = None
        self.provider: LLMProvider | None = None
        self.turns: list[TurnState] = []
        self.recorder: CallRecorder | None = None
        self.generation: Generation | None = None
        self.closed = False

    # --- caller events --------------------------------------------------------------------
    async def setup(self, start: CallStart) -> None:
        """Bind to the call (creating it if the voice webhook never ran) and load its history."""
        if self.call is not None:
            logger.warning("call %s: second setup ignored", start.call_sid)
            return
        self.call = await _call_for_session(start)
        self.persona = self.call.persona
        self.provider = provider_for(self.persona)
        self.turns = [
            TurnState(t.sequence, t.role, t.text, t.generated_text, t.interrupted)
            async for t in Turn.objects.filter(call=self.call).in_order()
        ]
        self.recorder = CallRecorder(self.call)
        logger.info(
            "call %s: relay session %s bound (%s turns)", start.call_sid, start.session_id, len(self.turns)
        )

    async def prompt(self, text: str) -> None:
        """The caller finished an utterance: answer it."""
        if not self._ready("prompt"):
            return
        if not text.strip():
            logger.info("call %s: empty prompt ignored", self.call.call_sid)
            return
        prompted_at = time.monotonic()
        await self._abort_generation(heard=None)
        self._append_turn(Turn.Role.USER, text)
        self._start_generation(prompted_at)

    async def dtmf(self, digit: str) -> None:
        await self.prompt(f"The caller pressed {digit}.")

    async def interrupt(self, utterance: str, duration_ms: float | None) -> None:
        """The caller talked over the agent: stop, and keep only what they heard."""
        if not self._ready("interrupt"):
            return
        if self.generation is not None:
            await self._abort_generation(heard=(utterance, duration_ms))
            return
        # The reply had finished streaming, but the caller heard less than was sent.
        last = self.turns[-1] if self.turns else None
        if last is None or last.role != Turn.Role.ASSISTANT or last.interrupted:
            logger.info("call %s: interrupt with no agent turn to truncate", self.call.call_sid)
            return
        self._truncate(last, last.generated_text or last.text, utterance, duration_ms)

    async def relay_error(self, description: str) -> None:
        call_sid = self.call.call_sid if self.call else "(before setup)"
        logger.warning("call %s: ConversationRelay error: %s", call_sid, description)
        if self.recorder:
            self.recorder.note("errors", {"source": "relay", "description": description})

    async def close(self) -> None:
        """The socket is gone: abort, store what was sent, mark the call ended, stop every task."""
        if self.closed:
            return
        self.closed = True
        await self._abort_generation(heard=None)
        if self.recorder is None:
            return
        call_id = self.call.pk
        self.recorder.then(lambda: acall_ended(call_id=call_id, source="socket"))
        await self.recorder.close()

    # --- generation -----------------------------------------------------------------------
    def _start_generation(self, prompted_at: float) -> None:
        messages = normalise_history((t.role, t.text) for t in self.turns)
        reply = ReplyStream(self._send_token)
        generation = Generation(reply, prompted_at)
        generation.task = asyncio.create_task(
            self._generate(generation, messages), name=f"reply:{self.call.call_sid}"
        )
        self.generation = generation

    async def _send_token(self, token: str) -> None:
        await self.output.send_token(token, False)

    async def _generate(self, generation: Generation, messages: list) -> None:
        reply = generation.reply
        try:
            await self.provider.stream_reply(persona=self.persona, messages=messages, reply=reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._speak_fallback(reply, exc)
        if reply.aborted:
            return  # whoever aborted it stores it
        await self.output.send_token("", True)  # closes the talk cycle
        self.generation = None
        self._store_reply(generation, interrupted=False)

    async def _speak_fallback(self, reply: ReplyStream, exc: Exception) -> None:
        sequence = len(self.turns)
        level = logging.WARNING if isinstance(exc, ProviderError) else logging.ERROR
        logger.log(
            level, "call %s turn %s: model failed: %s", self.call.call_sid, sequence, exc, exc_info=exc
        )
        self.recorder.note("errors", {"source": "model", "turn": sequence, "error": str(exc)[:500]})
        line = self.persona.fallback_line
        if reply.parts and not reply.parts[-1].endswith((" ", "\n")):
            line = f" {line}"
        await reply.write(line)

    async def _abort_generation(self, *, heard: tuple[str, float | None] | None) -> None:
        """Stop the reply in flight (if any) and store it: truncated to `heard` when the caller
        interrupted, else as sent (a newer prompt or a hang-up cut it short)."""
        generation, self.generation = self.generation, None
        if generation is None:
            return
        generation.reply.abort()
        generation.task.cancel()
        try:
            await asyncio.wait_for(generation.task, CANCEL_TIMEOUT)
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # we are being cancelled ourselves, not just the reply
        except TimeoutError:
            logger.error("call %s: aborted reply did not stop in %ss", self.call.call_sid, CANCEL_TIMEOUT)
        except Exception:
            logger.exception("call %s: aborted reply failed while unwinding", self.call.call_sid)
        turn = self._store_reply(generation, interrupted=True)
        if heard is not None and turn is not None:
            self._truncate(turn, turn.generated_text, *heard)

    def _store_reply(self, generation: Generation, *, interrupted: bool) -> TurnState | None:
        reply = generation.reply
        if not reply.text and interrupted:
            return None  # nothing reached the caller: no turn to keep
        return self._append_turn(
            Turn.Role.ASSISTANT,
            reply.text,
            generated_text=reply.text,
            interrupted=interrupted,
            first_token_ms=_ms(reply.first_token_at, generation.prompted_at),
            completed_ms=_ms(time.monotonic(), generation.prompted_at),
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

    def _truncate(self, turn: TurnState, sent: str, utterance: str, duration_ms: float | None) -> None:
        heard = heard_prefix(sent, utterance, duration_ms)
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
        if self.call is None or self.closed:
            logger.warning("%s before setup (or after close) ignored", what)
            return False
        return True


def _ms(at: float | None, since: float) -> int | None:
    return None if at is None else max(0, round((at - since) * 1000))


async def _call_for_session(start: CallStart) -> Call:
    """The Call for this relay session, marked in progress; created when the webhook never ran."""
    call = await Call.objects.select_related("persona").filter(call_sid=start.call_sid).afirst()
    if call is None:
        persona = await Persona.objects.afor_number(start.to_number)
        call, _ = await Call.objects.select_related("persona").aget_or_create(
            call_sid=start.call_sid,
            defaults={
                "persona": persona,
                "from_number": start.from_number,
                "to_number": start.to_number,
                "direction": start.direction
                if start.direction in Call.Direction.values
                else Call.Direction.INBOUND,
            },
        )
        logger.warning("call %s: relay setup for a call the voice webhook never saw", start.call_sid)
    call.session_id = start.session_id
    call.metadata = {**call.metadata, "customParameters": start.custom_parameters}
    if not call.is_over:
        call.status = Call.Status.IN_PROGRESS
    call.started_at = call.started_at or timezone.now()
    await call.asave(update_fields=["session_id", "metadata", "status", "started_at", "updated_at"])
    return call
