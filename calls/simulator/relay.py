"""Twilio's side of a call, played against a running Switchboard: the voice webhook, then the
ConversationRelay socket (docs: conversationrelay.md §2-3), with a caller who types or reads a
script. `manage.py simulate_call` is the front end.

No Django imports: the command passes the settings in, so tests can drive `RelayCaller` against
any websocket server.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

VOICE_PATH = "/twilio/voice/"
# How long a scripted caller waits for a reply's last token before saying the next line.
REPLY_TIMEOUT = 30.0
DTMF_KEYS = frozenset("0123456789*#")
COMMANDS_HELP = "/interrupt, /interrupt after N, /dtmf DIGITS, /sleep SECONDS, /quit"


class SimulatorError(Exception):
    """The call cannot go on: the server refused it, or could not be reached."""


def new_sid(prefix: str) -> str:
    """A Twilio-shaped identifier: a two-letter prefix and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def twilio_signature(token: str, url: str, params: dict[str, str] | None = None) -> str:
    """X-Twilio-Signature as Twilio signs `url`: with the form for webhooks, none for sockets."""
    return RequestValidator(token).compute_signature(url, params or {})


@dataclass(frozen=True)
class PhoneCall:
    """The identifiers Twilio gives one incoming call, and the messages that carry them."""

    from_number: str
    to_number: str
    call_sid: str = field(default_factory=lambda: new_sid("CA"))
    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    session_id: str = field(default_factory=lambda: new_sid("VX"))

    def voice_webhook_params(self) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "ringing",
            "Called": self.to_number,
            "Caller": self.from_number,
            "Direction": "inbound",
            "From": self.from_number,
            "To": self.to_number,
        }

    def setup_message(self, custom_parameters: dict[str, str]) -> dict[str, Any]:
        """The `setup` frame Twilio sends first on the socket (§2.1)."""
        return {
            "type": "setup",
            "sessionId": self.session_id,
            "accountSid": self.account_sid,
            "parentCallSid": "",
            "callSid": self.call_sid,
            "from": self.from_number,
            "to": self.to_number,
            "forwardedFrom": "",
            "callType": "PSTN",
            "callerName": "",
            "direction": "inbound",
            "callStatus": "RINGING",
            "customParameters": dict(custom_parameters),
        }


@dataclass(frozen=True)
class RelayTwiml:
    """What Twilio takes from the `<ConversationRelay>` noun to open the session."""

    url: str
    welcome_greeting: str
    parameters: dict[str, str]


def parse_relay_twiml(twiml: str | bytes) -> RelayTwiml:
    """Read the relay URL, greeting and `<Parameter>`s; SimulatorError for any other answer."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise SimulatorError(f"the voice webhook did not answer TwiML ({exc})") from exc
    relay = root.find("./Connect/ConversationRelay")
    if relay is None or not relay.get("url"):
        said = " ".join(text.strip() for text in root.itertext() if text.strip())
        raise SimulatorError(
            "the voice webhook did not connect the call to ConversationRelay"
            + (f"; it said: {said!r}" if said else "")
        )
    parameters = {p.get("name", ""): p.get("value", "") for p in relay.findall("Parameter")}
    return RelayTwiml(
        url=relay.get("url", ""), welcome_greeting=relay.get("welcomeGreeting", ""), parameters=parameters
    )


def post_voice_webhook(
    call: PhoneCall, *, base_url: str, public_base_url: str, token: str, timeout: float = 10.0
) -> str:
    """POST "a call comes in" to `base_url`, signed for the public URL the server checks."""
    params = call.voice_webhook_params()
    url = f"{base_url.rstrip('/')}{VOICE_PATH}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["X-Twilio-Signature"] = twilio_signature(
            token, f"{public_base_url.rstrip('/')}{VOICE_PATH}", params
        )
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(params).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        hint = " (do TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL match the server's?)" if exc.code == 403 else ""
        raise SimulatorError(f"{url} answered HTTP {exc.code}{hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SimulatorError(f"could not reach {url}: {reason} (is the server running?)") from exc


@dataclass
class Reply:
    """One talk cycle of the agent, as far as it has streamed."""

    text: str = ""
    tokens: int = 0
    first_token_at: float | None = None
    interrupted: bool = False
    late_tokens: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RelayCaller:
    """Plays Twilio on one open ConversationRelay socket: sends what the caller says and does,
    and prints what the agent streams back, token by token."""

    def __init__(
        self,
        ws: ClientConnection,
        *,
        out: TextIO,
        greeting: str = "",
        lang: str = "en-US",
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.ws = ws
        self.out = out
        self.greeting = greeting
        self.lang = lang
        self.reply_timeout = reply_timeout
        # The greeting is the first thing the caller hears, so it is the first reply to interrupt.
        self.reply = Reply(text=greeting)
        self.reply.done.set()
        self._interrupt_after: int | None = None  # for the reply now streaming
        self._interrupt_next: int | None = None  # for the reply to the next prompt
        self._closed = asyncio.Event()
        self._hanging_up = False
        self._line_open = False

    # --- What the caller does ---------------------------------------------------------------

    async def run(self, setup: dict[str, Any], lines: AsyncIterator[str], *, scripted: bool = False) -> None:
        """Send `setup`, then act out `lines` until they run out, `/quit`, or the session ends.

        Scripted lines are echoed, and each waits for the reply to the one before.
        """
        await self._send(setup)
        self.reply.first_token_at = time.monotonic()
        if self.greeting:
            self._print(f"agent: {self.greeting}")
        receiver = asyncio.create_task(self._receive())
        try:
            while (line := await self._next_line(lines)) is not None:
                if not await self._act(line.strip(), scripted=scripted):
                    break
        except ConnectionClosed:
            pass  # the receiver reports how the socket closed
        finally:
            await self.hang_up()
            await receiver
            if self._line_open:  # tokens that came in while the socket closed
                self._end_line()

    async def say(self, text: str, *, interrupt_after: int | None = None) -> Reply:
        """Send one final caller utterance; the returned Reply fills in as the agent answers."""
        self.reply = Reply()
        self._interrupt_after = interrupt_after
        await self._send({"type": "prompt", "voicePrompt": text, "lang": self.lang, "last": True})
        return self.reply

    async def interrupt(self) -> None:
        """Talk over the agent: Twilio reports what had been said of the current reply."""
        reply = self.reply
        started = reply.first_token_at
        elapsed_ms = 0 if started is None else round((time.monotonic() - started) * 1000)
        frame = {
            "type": "interrupt",
            "utteranceUntilInterrupt": reply.text,
            "durationUntilInterruptMs": elapsed_ms,
        }
        # Settle the reply before sending: tokens that arrive meanwhile are late, not heard.
        reply.interrupted = True
        reply.done.set()
        self._interrupt_after = None
        if self._line_open:
            self._end_line(" [interrupted]")
        else:
            self._print(f"[caller interrupts after {elapsed_ms} ms]")
        await self._send(frame)

    async def dtmf(self, keys: str) -> None:
        """Press keys, one `dtmf` frame each, as Twilio reports them."""
        keys = keys.replace(" ", "")
        if not keys or not set(keys) <= DTMF_KEYS:
            self._print("[usage: /dtmf DIGITS, with digits from 0-9 * #]")
            return
        for key in keys:
            await self._send({"type": "dtmf", "digit": key})

    async def hang_up(self) -> None:
        if self._closed.is_set() or self._hanging_up:
            return
        self._hanging_up = True
        self._print("[caller hangs up]")
        await self.ws.close()

    async def _act(self, line: str, *, scripted: bool) -> bool:
        """One line of input; False ends the call."""
        if not line or line.startswith("#"):
            return True
        if not line.startswith("/"):
            if scripted:
                self._print(f"caller: {line}")
            reply = await self.say(line, interrupt_after=self._interrupt_next)
            self._interrupt_next = None
            if scripted:
                await self._wait_for(reply)
            return True
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        match command:
            case "/quit":
                return False
            case "/interrupt" if not arg:
                await self.interrupt()
            case "/interrupt":
                count = arg.removeprefix("after").strip()
                if count.isdigit() and int(count) > 0:
                    self._interrupt_next = int(count)
                else:
                    self._print("[usage: /interrupt after N, with N a positive number of tokens]")
            case "/dtmf":
                await self.dtmf(arg)
            case "/sleep":
                try:
                    await asyncio.sleep(float(arg))
                except ValueError:
                    self._print("[usage: /sleep SECONDS]")
            case _:
                self._print(f"[unknown command {command}; try {COMMANDS_HELP}]")
        return True

    async def _wait_for(self, reply: Reply) -> None:
        try:
            async with asyncio.timeout(self.reply_timeout):
                await reply.done.wait()
        except TimeoutError:
            self._print(f"[no last:true within {self.reply_timeout:g} s; going on]")

    async def _next_line(self, lines: AsyncIterator[str]) -> str | None:
        """The next input line, or None once input ends or the session does."""
        if self._closed.is_set():
            return None
        line = asyncio.ensure_future(anext(lines, None))
        closed = asyncio.ensure_future(self._closed.wait())
        await asyncio.wait({line, closed}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if not line.done():
            line.cancel()
            return None
        return line.result()

    # --- What the agent sends ---------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = None
                if not isinstance(frame, dict):
                    self._print(f"[not a JSON object; Twilio would count it as malformed] {raw!r}")
                elif frame.get("type") == "text":
                    await self._on_text(frame)
                else:
                    await self._on_other(frame)
        except ConnectionClosed:
            pass
        finally:
            if not self._hanging_up:
                code = self.ws.close_code
                reason = f" {self.ws.close_reason}" if self.ws.close_reason else ""
                self._print(f"[the server closed the socket: {code}{reason}]")
            self._closed.set()
            self.reply.done.set()

    async def _on_text(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        if not isinstance(token, str):
            self._print(f"[invalid text frame; Twilio rejects it with error 64107] {json.dumps(frame)}")
            return
        reply = self.reply
        last = frame.get("last") is True
        if reply.interrupted:
            # Twilio stopped speaking this reply: tokens still coming show the app carried on.
            if not reply.late_tokens:
                self._open_line("agent, after the interrupt: ")
            reply.late_tokens += 1
            self._write(token)
            if last:
                self._end_line()
            return
        if reply.done.is_set():
            # Tokens with no prompt before them: the agent spoke on its own (a reprompt, say).
            reply = self.reply = Reply()
        if reply.first_token_at is None:
            reply.first_token_at = time.monotonic()
            self._open_line("agent: ")
        reply.text += token
        reply.tokens += 1
        self._write(token)
        if self._interrupt_after is not None and reply.tokens >= self._interrupt_after:
            await self.interrupt()
        elif last:
            self._end_line()
            if self._interrupt_after is not None:
                self._print(f"[the reply ended after {reply.tokens} tokens; no interrupt sent]")
                self._interrupt_after = None
            reply.done.set()

    async def _on_other(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        details = json.dumps({k: v for k, v in frame.items() if k != "type"}, ensure_ascii=False)
        self._print(f"[{kind}] {details}")
        if kind == "end":
            # Twilio ends the session here and hands the call back to the <Connect action> URL.
            self._print("[Twilio ends the session]")
            await self.hang_up()

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    # --- The terminal -----------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _open_line(self, prefix: str) -> None:
        if self._line_open:
            self._end_line()
        self._write(prefix)
        self._line_open = True

    def _end_line(self, suffix: str = "") -> None:
        self._write(f"{suffix}\n")
        self._line_open = False

    def _print(self, line: str) -> None:
        """A whole line, after ending any reply still streaming on the current one."""
        if self._line_open:
            self._end_line()
        self._write(f"{line}\n")


async def iterate(lines: Iterable[str]) -> AsyncIterator[str]:
    """Script lines as the async input RelayCaller reads."""
    for line in lines:
        yield line


async def stdin_lines() -> AsyncIterator[str]:
    """Terminal lines, read on a daemon thread so the socket keeps streaming while we wait,
    and so a hang-up from the server does not wait for the caller to press Enter."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            while line := sys.stdin.readline():
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:
            pass  # the loop closed: the call is over

    threading.Thread(target=pump, name="simulate-call-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def simulate_call(
    *,
    base_url: str,
    public_base_url: str,
    token: str,
    from_number: str,
    to_number: str,
    lines: AsyncIterator[str],
    scripted: bool,
    out: TextIO,
    relay_url: str | None = None,
    reply_timeout: float = REPLY_TIMEOUT,
) -> PhoneCall:
    """One whole call: the voice webhook, then the relay socket (`relay_url`, by default the
    one in the TwiML), signed like Twilio signs them when `token` is set."""
    call = PhoneCall(from_number=from_number, to_number=to_number)
    out.write(f"[calling {to_number} from {from_number}: {call.call_sid}]\n")
    twiml = parse_relay_twiml(
        await asyncio.to_thread(
            post_voice_webhook, call, base_url=base_url, public_base_url=public_base_url, token=token
        )
    )
    url = relay_url or twiml.url
    # Twilio signs the socket URL exactly as the TwiML gave it, whatever we actually dial.
    headers = {"X-Twilio-Signature": twilio_signature(token, twiml.url)} if token else {}
    try:
        ws = await connect(url, additional_headers=headers)
    except InvalidStatus as exc:
        raise SimulatorError(f"{url} refused the websocket: HTTP {exc.response.status_code}") from exc
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise SimulatorError(f"could not open {url}: {exc}") from exc
    async with ws:
        caller = RelayCaller(ws, out=out, greeting=twiml.welcome_greeting, reply_timeout=reply_timeout)
        await caller.run(call.setup_message(twiml.parameters), lines, scripted=scripted)
    return call
