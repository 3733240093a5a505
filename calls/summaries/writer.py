"""After-call summaries: the transcript in, a structured summary out, stored on the call.

Claude is asked through a forced tool call whose input schema is the `CallSummary` model, and its
answer is validated against that model before anything is stored. Without ANTHROPIC_API_KEY (the
embedded run) a clearly labelled demo summary is built from the transcript instead.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal

import anthropic
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.dispatch import Signal
from django.utils import timezone
from pydantic import BaseModel, Field, ValidationError

from agents.models import Persona
from calls.models import Call, Turn

logger = logging.getLogger(__name__)

DEFAULT_SUMMARY_MODEL = "claude-haiku-4-5"
DEMO_PREFIX = "Demo summary (no model configured):"
TOOL_NAME = "record_call_summary"
MODEL_TIMEOUT_SECONDS = 30.0  # below the task's soft time limit
MAX_RETRY_DELAY_SECONDS = 300.0

# Sent (call_id=...) once a summary is stored as done, by the run that stored it: outbound webhooks
# listen (outbound/apps.py), and calls never import them. Skipped and failed summaries send nothing.
call_summarized = Signal()

DEFAULT_SUMMARY_PROMPT = """\
You summarise phone calls between a caller and an AI phone agent, for the staff who follow up on \
them. Use only what the transcript says; never invent names, numbers or promises. Keep phone \
numbers, names, dates and times exactly as said. Be brief and factual."""

Outcome = Literal["resolved", "follow_up_needed", "transferred", "abandoned"]
Sentiment = Literal["positive", "neutral", "negative"]


class CallSummary(BaseModel):
    """The structured summary: the tool's input schema, and what its answer is validated against."""

    summary: str = Field(min_length=1, description="Two or three sentences on what happened in the call.")
    caller_intent: str = Field(min_length=1, description="What the caller wanted, in one short phrase.")
    outcome: Outcome = Field(
        description=(
            "resolved: the caller's need was met during the call. follow_up_needed: someone must act "
            "later (call back, book, send something). transferred: the call was handed to a person. "
            "abandoned: the caller left before their need was addressed."
        )
    )
    action_items: list[str] = Field(
        description="Concrete things staff must do, each a short imperative sentence; empty if none."
    )
    sentiment: Sentiment = Field(description="The caller's overall mood.")


class SummaryUnavailable(Exception):
    """The model is temporarily unavailable (429, 5xx, 529, timeout, connection): try again later."""


@dataclass(frozen=True)
class Line:
    role: str
    text: str
    interrupted: bool = False

    def render(self) -> str:
        who = "Caller" if self.role == Turn.Role.USER else "Agent"
        return f"{who}: {self.text}{' [cut off by the caller]' if self.interrupted else ''}"


# --- the task's entry points ------------------------------------------------------------------


def call_summarize(call_id: int, *, resume: bool = False) -> str:
    """Summarise one ended call and store the result; the summary status it ends in.

    Raises SummaryUnavailable for errors worth retrying; records every other failure on the call.
    Does nothing (returns "") unless the call's summary is queued: a duplicate delivery, a run
    someone else is doing, or a call that reconnected after its summary was asked for. `resume`
    (a message redelivered because its worker died) also takes over a "running" summary: the
    one this message's dead worker left.
    """
    call = _claim(call_id, resume=resume)
    if call is None:
        return ""
    lines = transcript_lines(call)
    if not any(line.role == Turn.Role.USER for line in lines):
        return _finish(call_id, status=Call.SummaryStatus.SKIPPED, error="The caller said nothing.")
    try:
        if settings.ANTHROPIC_API_KEY:
            model = summary_model(call.persona)
            result = ask_claude(call, lines, model=model)
        else:
            model = "demo"
            result = demo_summary(lines)
    except SoftTimeLimitExceeded:
        return summary_failed(call_id, reason="The summary took longer than the task's time limit.")
    except _PermanentFailure as exc:
        return summary_failed(call_id, reason=str(exc))
    return _finish(
        call_id,
        status=Call.SummaryStatus.DONE,
        summary=result.summary,
        summary_data={**result.model_dump(mode="json"), "model": model},
        summary_outcome=result.outcome,
    )


def summary_failed(call_id: int, *, reason: str) -> str:
    """Record a final failure, with the reason staff will read in the admin."""
    logger.warning("summary of call %s failed: %s", call_id, reason)
    return _finish(call_id, status=Call.SummaryStatus.FAILED, error=reason)


def summary_release(call_id: int) -> None:
    """Hand a running summary back ("queued") before a retry: the retry claims it like any other
    message, and a duplicate meanwhile can't run it twice. If the retry is lost, the sweep finds
    it queued."""
    Call.objects.filter(pk=call_id, summary_status=Call.SummaryStatus.RUNNING).update(
        summary_status=Call.SummaryStatus.QUEUED, updated_at=timezone.now()
    )


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter: SUMMARY_RETRY_BASE_SECONDS, then twice that, and so on, capped."""
    delay = min(MAX_RETRY_DELAY_SECONDS, settings.SUMMARY_RETRY_BASE_SECONDS * 2**retries)
    return delay * random.uniform(0.75, 1.0)


# --- reading and writing the call -------------------------------------------------------------


def _claim(call_id: int, *, resume: bool = False) -> Call | None:
    # One conditional UPDATE: of the messages for one call (a duplicate, the sweep's), one runs.
    # updated_at is the claim's heartbeat: the sweep leaves a "running" summary alone until the
    # deadline, longer than any live attempt.
    running = Call.SummaryStatus.RUNNING
    claimable = [Call.SummaryStatus.QUEUED, running] if resume else [Call.SummaryStatus.QUEUED]
    claimed = Call.objects.filter(pk=call_id, summary_status__in=claimable).update(
        summary_status=running, updated_at=timezone.now()
    )
    if not claimed:
        logger.info("summary of call %s: nothing to do (not queued)", call_id)
        return None
    return Call.objects.select_related("persona").get(pk=call_id)


def _finish(call_id: int, *, status: str, error: str = "", **fields: object) -> str:
    # Only over our own run: a rerun or a reconnect that reset the summary meanwhile wins.
    stored = Call.objects.filter(pk=call_id, summary_status=Call.SummaryStatus.RUNNING).update(
        summary_status=status, summary_error=error, updated_at=timezone.now(), **fields
    )
    if stored and status == Call.SummaryStatus.DONE:
        call_summarized.send_robust(sender=Call, call_id=call_id)  # a listener's error is logged only
    return status


def transcript_lines(call: Call) -> list[Line]:
    """What was said, in order: each turn's heard text (never the unheard remainder)."""
    return [
        Line(role=role, text=text.strip(), interrupted=interrupted)
        for role, text, interrupted in call.turns.in_order().values_list("role", "text", "interrupted")
        if text.strip()
    ]


# --- the model --------------------------------------------------------------------------------


class _PermanentFailure(Exception):
    """A failure that retrying won't fix: a bad request, an answer that doesn't fit the schema."""


def summary_model(persona: Persona) -> str:
    if persona.llm_provider == Persona.LlmProvider.ANTHROPIC and persona.llm_model:
        return persona.llm_model
    return DEFAULT_SUMMARY_MODEL


def anthropic_client() -> anthropic.Anthropic:
    # The SDK's own retries are off: Celery retries with backoff, and the task stays short.
    return anthropic.Anthropic(
        api_key=settings.ANTHROPIC_API_KEY,
        base_url=settings.ANTHROPIC_BASE_URL or None,
        max_retries=0,
        timeout=MODEL_TIMEOUT_SECONDS,
        open_telemetry=None if settings.ANTHROPIC_OPEN_TELEMETRY else False,  # as the live calls'
    )


def summary_request_body(call: Call, lines: list[Line], *, model: str) -> dict:
    """The Messages API request: the persona's summary prompt and a forced tool call."""
    transcript = "\n".join(line.render() for line in lines)
    handoff = call.metadata.get("handoff")
    note = f"\n\nThe agent ended the call with handoff data: {handoff}" if handoff else ""
    return {
        "model": model,
        "max_tokens": 1024,
        "system": call.persona.summary_prompt.strip() or DEFAULT_SUMMARY_PROMPT,
        "messages": [
            {
                "role": "user",
                "content": f"Transcript of a call answered by {call.persona.name}:\n\n{transcript}{note}\n\n"
                f"Record the summary with the {TOOL_NAME} tool.",
            }
        ],
        "tools": [
            {
                "name": TOOL_NAME,
                "description": "Record the structured summary of the phone call.",
                "input_schema": CallSummary.model_json_schema(),
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def is_transient(exc: anthropic.APIError) -> bool:
    """What the SDK itself would retry: connection errors and timeouts, 408, 409, 429 and 5xx
    (529 "overloaded" included)."""
    if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError included
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def ask_claude(call: Call, lines: list[Line], *, model: str) -> CallSummary:
    try:
        with anthropic_client() as client:
            message = client.messages.create(**summary_request_body(call, lines, model=model))
    except anthropic.APIError as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:500]}"
        if is_transient(exc):
            raise SummaryUnavailable(reason) from exc
        raise _PermanentFailure(reason) from exc
    tool_input = next(
        (block.input for block in message.content if block.type == "tool_use" and block.name == TOOL_NAME),
        None,
    )
    if tool_input is None:
        raise _PermanentFailure(f"The model did not call {TOOL_NAME} (stop reason {message.stop_reason}).")
    try:
        return CallSummary.model_validate(tool_input)
    except ValidationError as exc:
        raise _PermanentFailure(f"The model's summary does not fit the schema: {exc}") from exc


def demo_summary(lines: list[Line]) -> CallSummary:
    """A labelled stand-in built from the transcript, for runs without a model."""
    said = [line.text for line in lines if line.role == Turn.Role.USER]
    first = said[0] if len(said[0]) <= 120 else f"{said[0][:117]}..."
    times = "once" if len(said) == 1 else f"{len(said)} times"
    turns = "1 turn" if len(lines) == 1 else f"{len(lines)} turns"
    return CallSummary(
        summary=f"{DEMO_PREFIX} the caller spoke {times} in a call of {turns}, starting with “{first}”",
        caller_intent=first,
        outcome="follow_up_needed",
        action_items=["Read the transcript: no summary model is configured (set ANTHROPIC_API_KEY)."],
        sentiment="neutral",
    )
