"""Load benchmark of the ConversationRelay socket: N concurrent simulated calls against one server.

Workload. A fake Anthropic API runs in its own process (fakes/anthropic_server.py --tagged: 300 ms
to the first token, 25 tokens/s, 50 tokens a reply, every token naming its request, " r17w3").
ONE server process (daphne, or uvicorn with uvloop, httptools and, unless --ws says otherwise,
websockets' sans-I/O implementation) serves the real ASGI app on
PostgreSQL (database switchboard_bench, created and migrated first), DEBUG off, Redis DB 9 as the
Celery broker (end-of-call summaries are enqueued there, as in production; no worker runs). This
process plays Twilio for N calls started evenly over 5 s. Each call opens a signed socket, sends
`setup`, then 4 prompts, each 500 ms after setup or after the previous reply's `last:true`. The
3rd reply is interrupted after its 10th token: the call sends `interrupt` with the text received
so far and, at once, the 4th prompt (a caller talking over the agent). Then it hangs up. A warm-up
call with one prompt goes first: the server's first reply pays for lazy imports (shown alone).

Metrics.
- Added first-token latency: prompt sent -> first text token received, minus the fake's time to
  first token. All prompts together, then each prompt of the call alone.
- Added inter-token delay: the gap between consecutive tokens of one reply minus the fake's
  interval (1/rate); negative when tokens bunch up behind a late one.
- Fake alone: the same two numbers for streams this process reads straight from the fake, one
  after another during the load. They are the fake's and this process's share of the numbers
  above, which include them: the server's own share is roughly the difference.
- Old-reply tokens after interrupt: frames of the interrupted reply (told apart by their request
  tag) received after the first token of a later reply. The server handles one socket's frames in
  order, so once the reply to the prompt sent right behind the interrupt has begun, the interrupt
  has been handled: any old frame after that breaks the rule, and the target is 0. Old frames
  received between sending the interrupt and that point may have been in flight already; they are
  counted apart ("in flight"), with how long after the interrupt the last one came.
- Provider streams closed early: the fake's /stats `closed_early`, against the interrupts sent
  (the only streams that should end early). A server running far behind may handle an interrupt
  after the fake has sent the whole reply: such streams complete, and are counted as such.
- Errors: failed handshakes, timeouts (30 s without a frame), closed sockets, short or mixed
  replies, unexpected frames, calls cut by the run's time bound. Replies: completed of expected.
- With --webhook, each call first POSTs the signed voice webhook (/twilio/voice/) as Twilio does,
  and its socket's `setup` names that call: the webhook's response time is reported, and its
  database work competes with the live calls' as in production. Without it (the issue's
  workload) each setup creates its call.
- With --json, also the added first-token latency by the second of the load the prompt was sent
  in: a stall (a full garbage collection, say) shows as one slow second.
- Server CPU (user+sys) during the load, from the first call to the last hang-up; peak RSS sampled
  every 100 ms. The fake's, this process's and the rest of the machine's CPU (PostgreSQL, anyone
  else) over the same span, this process's event-loop lag, and the time the hypervisor stole
  from this virtual machine (steal, often tens of percent on a busy host) tell a disturbed run
  apart.

Run (PostgreSQL on 127.0.0.1:5432, user postgres; nothing leaves 127.0.0.1):
    .venv/bin/python -m bench.relay_load --calls 200 --server daphne --json /tmp/daphne-200.json
    .venv/bin/python -m bench.relay_load --calls 500 --server uvicorn
--server node runs bench/node_baseline/server.mjs instead: a minimal Node.js server (ws and the
official Anthropic SDK, no database) that only forwards tokens, the baseline of this workload on
this machine (run `npm ci --prefix bench/node_baseline` first).
Add --py-spy /tmp/profile.svg (.json: speedscope, else raw stacks) to profile the server under load
(py-spy is in requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import psutil
import psycopg
import redis
import uvloop
import websockets
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from calls.frames import MAX_FRAME_CHARS

ROOT = Path(__file__).resolve().parent.parent
NODE_BASELINE = ROOT / "bench" / "node_baseline"
DATABASE = "switchboard_bench"
REDIS_URL = "redis://127.0.0.1:6379/9"  # the server's Celery broker, emptied before each run
TWILIO_TOKEN = "bench-token"
INTERRUPTED_PROMPT = 2  # 0-based: the 3rd reply is interrupted...
INTERRUPT_AFTER = 10  # ...after this many tokens
FRAME_TIMEOUT = 30.0  # seconds without a frame before a call counts as timed out
# Loopback only: urllib (and the children's httpx) would follow proxy variables.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """A call went wrong; the message is the error's name in the report."""


@dataclass
class Stats:
    # ms over the fake's time to first token, by prompt (0-based)
    first_token: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    gaps: list[float] = field(default_factory=list)  # ms over the fake's interval
    replies: int = 0
    interrupts: int = 0
    old_after: int = 0  # old-reply frames after the interrupt was handled: must stay 0
    old_in_flight: int = 0
    old_in_flight_last_ms: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    probe_first: list[float] = field(default_factory=list)  # the same, straight from the fake
    probe_gaps: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # the server's, bytes
    lag: list[float] = field(default_factory=list)  # this process's event loop, ms
    webhook: aiohttp.ClientSession | None = None  # set with --webhook
    webhook_ms: list[float] = field(default_factory=list)  # the voice webhook's response time
    # (seconds into the load when the prompt was sent, added first-token ms): when slow ones happen
    timeline: list[tuple[float, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    prompts: dict[str, int] = field(default_factory=dict)  # by CallSid: what each call said
    outage: dict[str, float] = field(default_factory=dict)  # --stop-postgres: when, how long


class Call:
    """Twilio's side of one ConversationRelay socket."""

    def __init__(
        self, ws: ClientConnection, args: argparse.Namespace, stats: Stats, call_sid: str = ""
    ) -> None:
        self.ws, self.args, self.stats = ws, args, stats
        self.call_sid = call_sid or f"CA{uuid.uuid4().hex}"
        self.old_tag = ""  # the interrupted reply's request tag
        self.interrupted_at = 0.0
        self.handled = False  # a reply has begun since the interrupt: it was handled
        self.prompts = 0

    async def run(self) -> None:
        await self.setup()
        pause = self.args.pause  # Twilio's greeting plays between setup and the first prompt
        for n in range(self.args.prompts):
            await asyncio.sleep(pause)
            prompted_at = await self.prompt(n)
            if n == INTERRUPTED_PROMPT:
                await self.interrupt(await self.reply(prompted_at, stop_after=INTERRUPT_AFTER))
                pause = 0.0
            else:
                await self.reply(prompted_at)
                self.stats.replies += 1
                pause = self.args.pause

    async def setup(self) -> None:
        await self.send(type="setup", callSid=self.call_sid, sessionId=f"VX{uuid.uuid4().hex}")

    async def prompt(self, n: int) -> float:
        prompted_at = time.perf_counter()
        await self.send(type="prompt", voicePrompt=f"Question {n}?", lang="en-US", last=True)
        self.prompts += 1
        self.stats.prompts[self.call_sid] = self.prompts
        return prompted_at

    async def send(self, **frame: object) -> None:
        await self.ws.send(json.dumps(frame))

    async def interrupt(self, tokens: list[str]) -> None:
        self.old_tag = tag_of(tokens[0])
        self.interrupted_at = time.perf_counter()
        spoken_ms = round(len(tokens) * 1000 / self.args.rate)
        await self.send(
            type="interrupt", utteranceUntilInterrupt="".join(tokens), durationUntilInterruptMs=spoken_ms
        )
        self.stats.interrupts += 1

    async def reply(self, prompted_at: float, stop_after: int = 0) -> list[str]:
        """The tokens of the reply to the prompt sent at `prompted_at` (only the first `stop_after`
        when given); frames of an interrupted reply are counted and skipped."""
        tokens: list[str] = []
        tag, last_at = "", 0.0
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), FRAME_TIMEOUT))
            now = time.perf_counter()
            if frame.get("type") != "text":
                raise BenchError(f"unexpected {frame.get('type')} frame")
            token = frame.get("token") or ""
            # An empty token before this reply began closes the old one (if it was sent at all).
            if self.old_tag and (tag_of(token) == self.old_tag or not (token or tag)):
                self.count_old(now)
                continue
            if token:
                if not tag:
                    tag = tag_of(token)
                    self.first_token(now - prompted_at)
                elif tag_of(token) != tag:
                    raise BenchError("tokens of two replies mixed")
                else:
                    # A phrase-chunked frame carries several words: its gap spans as many intervals.
                    words_gap = len(token.split()) / self.args.rate
                    self.stats.gaps.append((now - last_at - words_gap) * 1000)
                tokens.extend(f" {word}" for word in token.split())  # one per model token
                last_at = now
                if stop_after and len(tokens) >= stop_after:
                    return tokens
            if frame.get("last"):
                if len(tokens) != self.args.tokens:
                    raise BenchError("short reply")
                return tokens

    def first_token(self, seconds: float) -> None:
        added_ms = (seconds - self.args.ttft) * 1000
        self.stats.first_token[self.prompts - 1].append(added_ms)
        self.stats.timeline.append((time.perf_counter() - seconds - self.stats.started, added_ms))
        self.handled = bool(self.old_tag)

    def count_old(self, now: float) -> None:
        if self.handled:
            self.stats.old_after += 1
            return
        self.stats.old_in_flight += 1
        late_ms = (now - self.interrupted_at) * 1000
        self.stats.old_in_flight_last_ms = max(self.stats.old_in_flight_last_ms, late_ms)


def tag_of(token: str) -> str:
    return token.strip().partition("w")[0]  # " r17w3" -> "r17" (speech filters may trim the first)


def open_socket(url: str, signature: str) -> connect:
    return connect(
        url,
        additional_headers={"X-Twilio-Signature": signature},
        compression=None,  # not known to be offered by Twilio; it would cost both sides CPU
        proxy=None,
        ping_interval=None,
        open_timeout=FRAME_TIMEOUT,
        close_timeout=5,
    )


async def warm_up(url: str, signature: str, args: argparse.Namespace) -> float:
    """One call with one prompt before the load: the server's first reply pays for lazy imports
    and the provider's client. Returns that reply's added first-token latency."""
    async with open_socket(url, signature) as ws:
        call = Call(ws, args, Stats())
        await call.setup()
        await call.reply(await call.prompt(0))
    return call.stats.first_token[0][0]


async def place_call(n: int, url: str, signature: str, args: argparse.Namespace, stats: Stats) -> None:
    await asyncio.sleep(n * args.ramp / args.calls)
    call_sid = f"CA{uuid.uuid4().hex}"
    if stats.webhook is not None:
        try:
            await ring(stats.webhook, url, call_sid, stats)
        except (OSError, TimeoutError, aiohttp.ClientError, BenchError) as exc:
            stats.errors[f"voice webhook: {exc if isinstance(exc, BenchError) else type(exc).__name__}"] += 1
            return
    try:
        ws = await open_socket(url, signature)
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        stats.errors[f"connect: {type(exc).__name__}"] += 1
        return
    try:
        await Call(ws, args, stats, call_sid).run()
    except TimeoutError:
        stats.errors["timeout"] += 1
    except websockets.ConnectionClosed:
        stats.errors["socket closed"] += 1
    except BenchError as exc:
        stats.errors[str(exc)] += 1
    finally:
        await ws.close()


async def load(args: argparse.Namespace, port: int, server_pid: int, fake: tuple[str, int]) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/relay/"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    cold_ms = await asyncio.wait_for(warm_up(url, signature, args), FRAME_TIMEOUT)
    stats, stop = Stats(), asyncio.Event()
    if args.webhook:
        stats.webhook = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        await ring(stats.webhook, url, f"CA{uuid.uuid4().hex}", Stats())  # its first pays for imports
    server = psutil.Process(server_pid)
    processes = {"server": server, "fake": psutil.Process(fake[1]), "load generator": psutil.Process()}
    cpu_before = {name: cpu_seconds(p) for name, p in processes.items()}
    server_system_before = server.cpu_times().system
    machine_before, steal_before, rss_before = machine_busy(), stolen(), server.memory_info().rss
    stats.rss.append(rss_before)
    background = [
        asyncio.create_task(sample(server, stop, stats)),
        asyncio.create_task(probe_fake(fake[0], args, stop, stats)),
    ]
    profiler = start_py_spy(args.py_spy, server_pid) if args.py_spy else None
    started = stats.started = time.perf_counter()
    if args.stop_postgres:
        background.append(asyncio.create_task(stop_postgres(args, stats)))
    await place_calls(url, signature, args, stats)
    elapsed = time.perf_counter() - started
    cpu = {name: cpu_seconds(p) - cpu_before[name] for name, p in processes.items()}
    cpu["rest of the machine"] = machine_busy() - machine_before - sum(cpu.values())
    cpu["server system"] = server.cpu_times().system - server_system_before  # part of "server"
    cpu["stolen"] = stolen() - steal_before
    if profiler:
        stop_py_spy(profiler)
    stop.set()
    await asyncio.gather(*background)
    if stats.webhook is not None:
        await stats.webhook.close()
    return {
        "warm_up_added_first_token_ms": round(cold_ms, 1),
        "added_first_token_ms": spread([ms for by_prompt in stats.first_token.values() for ms in by_prompt]),
        "added_first_token_ms_by_prompt": {n + 1: spread(ms) for n, ms in sorted(stats.first_token.items())},
        "added_inter_token_ms": spread(stats.gaps),
        "fake_alone_first_token_ms": spread(stats.probe_first),
        "fake_alone_inter_token_ms": spread(stats.probe_gaps),
        "replies": {"completed": stats.replies, "expected": args.calls * (args.prompts - 1)},
        "interrupts": stats.interrupts,
        "old_reply_tokens_after_interrupt": stats.old_after,
        "old_reply_frames_in_flight": stats.old_in_flight,
        "old_reply_in_flight_last_ms": round(stats.old_in_flight_last_ms, 1),
        "errors": dict(stats.errors),
        "load_seconds": round(elapsed, 1),
        "cpu_seconds": {name: round(seconds, 2) for name, seconds in cpu.items()},
        "server_rss_mb": {
            "before": mb(rss_before),
            "peak": mb(max(stats.rss)),
            # At each quarter of the load and at its end: a leak grows from one to the next.
            "by_quarter": [
                mb(stats.rss[min(len(stats.rss) - 1, len(stats.rss) * q // 4)]) for q in (1, 2, 3, 4)
            ],
        },
        "load_generator_loop_lag_ms": spread(stats.lag),
        "added_first_token_ms_by_second": by_second(stats.timeline),
        "voice_webhook_ms": spread(stats.webhook_ms) if args.webhook else None,
        "postgres_outage": stats.outage or None,
        "_prompts": stats.prompts,
    }


async def stop_postgres(args: argparse.Namespace, stats: Stats) -> None:
    """Stop the machine's PostgreSQL in the middle of the ramp, for --stop-postgres seconds."""
    await asyncio.sleep(args.ramp / 2)
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", *postgres_cluster()]
    began = time.perf_counter()
    await asyncio.to_thread(subprocess.run, [*cluster, "stop", "-m", "fast"], check=True)
    stopped = time.perf_counter()
    await asyncio.sleep(args.stop_postgres)
    await asyncio.to_thread(subprocess.run, [*cluster, "start"], check=True)
    stats.outage = {
        "at_s": round(began - stats.started, 1),
        "down_s": round(time.perf_counter() - stopped, 1),
        "stopping_s": round(stopped - began, 1),
    }


def postgres_cluster() -> list[str]:
    """The version and name of the machine's one cluster, as pg_ctlcluster takes them."""
    version = sorted(Path("/etc/postgresql").iterdir())[0].name
    return [version, "main"]


def transcripts(prompts: dict[str, int], timeout: float = 120.0) -> dict:
    """Every bench call's stored turns against what it said: once all calls are ended (their
    last writes may have waited out an outage), the turns lost and the calls with a gap."""
    deadline = time.monotonic() + timeout
    sids = list(prompts)
    query = (
        "SELECT c.call_sid, c.ended_at IS NOT NULL, t.sequence, t.role FROM calls_call c"
        " LEFT JOIN calls_turn t ON t.call_id = c.id WHERE c.call_sid = ANY(%s) ORDER BY c.call_sid, t.sequence"
    )
    while True:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}", autocommit=True) as db:
            rows = db.execute(query, [sids]).fetchall()
        calls: dict[str, dict] = {}
        for sid, ended, sequence, role in rows:
            stored = calls.setdefault(sid, {"ended": ended, "sequences": [], "user": 0, "assistant": 0})
            if sequence is not None:
                stored["sequences"].append(sequence)
                stored[role] += 1
        if all(call["ended"] for call in calls.values()) and len(calls) == len(sids):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    lost = gaps = 0
    for sid, said in prompts.items():
        call = calls.get(sid)
        if call is None:
            lost += 2 * said
            continue
        greeting = int(call["sequences"][:1] == [0] and call["assistant"] > call["user"])
        lost += max(0, said - call["user"]) + max(0, said + greeting - call["assistant"])
        gaps += call["sequences"] != list(range(len(call["sequences"])))
    return {
        "calls": len(prompts),
        "calls_stored": len(calls),
        "calls_not_ended": sum(not call["ended"] for call in calls.values()),
        "turns_lost": lost,
        "calls_with_a_gap": gaps,
    }


async def ring(session: aiohttp.ClientSession, relay_url: str, call_sid: str, stats: Stats) -> None:
    """What Twilio does before the socket: POST the signed "a call comes in" webhook and expect
    TwiML that connects the call to ConversationRelay."""
    base = relay_url.replace("ws://", "http://").removesuffix("/ws/relay/")
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "be" * 16,  # Twilio-shaped: the webhook refuses anything else
        "From": "+15550001111",
        "To": "+15550002222",
        "Direction": "inbound",
        "CallStatus": "ringing",
    }
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{base}/twilio/voice/", params)
    started = time.perf_counter()
    async with session.post(
        f"{base}/twilio/voice/", data=params, headers={"X-Twilio-Signature": signature}
    ) as response:
        twiml = await response.text()
    stats.webhook_ms.append((time.perf_counter() - started) * 1000)
    if response.status != 200 or "<ConversationRelay" not in twiml:
        raise BenchError(f"{response.status} without ConversationRelay")


async def place_calls(url: str, signature: str, args: argparse.Namespace, stats: Stats) -> None:
    calls = [asyncio.create_task(place_call(n, url, signature, args, stats)) for n in range(args.calls)]
    bound = args.ramp + args.prompts * (args.ttft + args.tokens / args.rate + args.pause) + 60
    _, late = await asyncio.wait(calls, timeout=bound)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    if late:
        stats.errors["cut by the run's time bound"] += len(late)


async def probe_fake(fake_url: str, args: argparse.Namespace, stop: asyncio.Event, stats: Stats) -> None:
    """Streams straight from the fake, one after another while the load runs: the fake's (and this
    process's) own share of the added latencies, with no server in between."""
    body = {
        "model": "probe",
        "max_tokens": 99,
        "stream": True,
        "messages": [{"role": "user", "content": "?"}],
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FRAME_TIMEOUT)) as session:
        while not stop.is_set():
            started = last = time.perf_counter()
            async with session.post(f"{fake_url}/v1/messages", json=body) as response:
                async for line in response.content:
                    if b"text_delta" in line:
                        now = time.perf_counter()
                        if last == started:
                            stats.probe_first.append((now - started - args.ttft) * 1000)
                        else:
                            stats.probe_gaps.append((now - last - 1 / args.rate) * 1000)
                        last = now


async def sample(server: psutil.Process, stop: asyncio.Event, stats: Stats) -> None:
    """The server's RSS every 100 ms, and how late this loop wakes up (its own lag)."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.1)
        stats.lag.append((time.perf_counter() - before - 0.1) * 1000)
        try:
            stats.rss.append(server.memory_info().rss)
        except psutil.NoSuchProcess:
            return


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def machine_busy() -> float:
    times = psutil.cpu_times()  # guest time is in user already; steal is not ours
    return (
        times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
    )


def stolen() -> float:
    """CPU seconds the hypervisor gave to other guests while this one's vCPUs wanted to run. On a
    shared cloud host it comes and goes, and every latency here grows with it."""
    return getattr(psutil.cpu_times(), "steal", 0.0)


def by_second(timeline: list[tuple[float, float]]) -> dict[int, dict[str, float]]:
    """Added first-token latency by the second of the load its prompt was sent in: a stall (a
    full garbage collection, say) shows as one slow second."""
    seconds: defaultdict[int, list[float]] = defaultdict(list)
    for at, ms in timeline:
        seconds[int(at)].append(ms)
    return {second: spread(values) for second, values in sorted(seconds.items())}


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    points = {"p50": q[49], "p95": q[94], "p99": q[98], "max": max(values)}
    return {"n": len(values)} | {name: round(value, 2) for name, value in points.items()}


def mb(size: int) -> float:
    return round(size / 2**20, 1)


# --- processes ------------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# A server with DEBUG off refuses a weak key (voiceproject/secret_key.py): one of its own per run.
BENCH_SECRET_KEY = secrets.token_urlsafe(50)


def child_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "REDIS_URL"}
    return env | values


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.server == "node":
        return ["node", "bench/node_baseline/server.mjs", "--port", str(port)]
    if args.server == "daphne":
        daphne = ("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "voiceproject.asgi:application")
        return [sys.executable, *daphne]
    return [
        *(sys.executable, "-m", "uvicorn", "voiceproject.asgi:application"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "off"),
        *("--ws", args.ws, "--loop", "uvloop", "--http", "httptools"),
        *("--ws-max-size", str(MAX_FRAME_CHARS)),  # as the Dockerfile runs it
    ]


def prepare_database(env: dict[str, str], chunking: str, provider: str = "anthropic") -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            db.execute(f'CREATE DATABASE "{DATABASE}"')
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=180)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}", autocommit=True) as db:
        db.execute(
            "UPDATE agents_persona SET speech_chunking = %s, llm_provider = %s WHERE is_default",
            [chunking, provider],
        )


def issue_agent_key(env: dict[str, str]) -> str:
    """A new agent key (agents.models.AgentKey), as staff would create one in the admin."""
    code = "from agents.models import AgentKey; print(AgentKey.objects.issue('bench')[1])"
    command = [sys.executable, "manage.py", "shell", "-c", code]
    done = subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def start_agent(env: dict[str, str], port: int, key: str, fake_url: str, log: IO[str]) -> subprocess.Popen:
    """bench/agent_forwarder.py connected to the server: it answers every turn from the fake."""
    agent_env = child_env(
        SWITCHBOARD_AGENT_URL=f"ws://127.0.0.1:{port}/ws/agent/",
        SWITCHBOARD_API_KEY=key,
        ANTHROPIC_BASE_URL=fake_url,
        ANTHROPIC_API_KEY="bench",
    )
    command = [sys.executable, "-m", "bench.agent_forwarder"]
    agent = subprocess.Popen(command, cwd=ROOT, env=agent_env, stdout=subprocess.PIPE, stderr=log, text=True)
    assert agent.stdout is not None
    if agent.stdout.readline().strip() != "ready":
        raise BenchError("the agent process did not connect")
    return agent


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with HTTP.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} was not ready in {timeout} s")


def get_json(url: str) -> dict:
    with HTTP.open(url, timeout=5) as response:
        return json.load(response)


def provider_stats(fake_url: str) -> dict:
    """The fake's counts, once every stream it served has ended (bounded)."""
    deadline = time.monotonic() + 5
    while True:
        stats = get_json(f"{fake_url}/stats")
        if stats["completed"] + stats["closed_early"] >= stats["streams"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def start_py_spy(path: str, pid: int) -> subprocess.Popen:
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(Path(path).suffix, "raw")
    exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    # Python stacks of whichever thread holds the GIL: where the server's CPU goes. py-spy pauses
    # the server for each sample (unpaused samples come out truncated), so latencies are inflated.
    command = [exe, "record", "--pid", str(pid), "--output", path, "--format", fmt, "--rate", "250", "--gil"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def stop_py_spy(profiler: subprocess.Popen) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def run(args: argparse.Namespace) -> dict:
    fake_port, port = free_ports(2)
    fake_url = f"http://127.0.0.1:{fake_port}"
    env = child_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        DEBUG="false",
        SECRET_KEY=BENCH_SECRET_KEY,
        ANTHROPIC_API_KEY="bench",
        ANTHROPIC_BASE_URL=fake_url,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        LOG_LEVEL="WARNING",
        # As in production: summaries are only enqueued (a worker elsewhere would run them).
        # --summaries-inside: no Redis, as in the embedded run: they run in the server process.
        **({} if args.summaries_inside else {"REDIS_URL": REDIS_URL}),
    )
    prepare_database(env, args.chunking, "agent" if args.agent else "anthropic")
    redis.Redis.from_url(REDIS_URL).flushdb()
    fake_command = [sys.executable, "-m", "fakes.anthropic_server", "--tagged", "--port", str(fake_port)]
    fake_command += ["--ttft", str(args.ttft), "--rate", str(args.rate), "--tokens", str(args.tokens)]
    log = tempfile.NamedTemporaryFile("w", prefix=f"bench-{args.server}-", suffix=".log", delete=False)  # noqa: SIM115
    children: list[subprocess.Popen] = []
    try:
        fake = subprocess.Popen(fake_command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL)
        children.append(fake)
        wait_until_ready(f"{fake_url}/stats", fake, 15)
        server = subprocess.Popen(server_command(args, port), cwd=ROOT, env=env, stdout=log, stderr=log)
        children.append(server)
        wait_until_ready(f"http://127.0.0.1:{port}/health/", server, 60)
        if args.agent:
            children.append(start_agent(env, port, issue_agent_key(env), fake_url, log))
        print(f"server pid {server.pid}, log {log.name}; {args.calls} calls...", file=sys.stderr)
        result = asyncio.run(
            load(args, port, server.pid, (fake_url, fake.pid)), loop_factory=uvloop.new_event_loop
        )
        result["provider"] = provider_stats(fake_url)
        result["transcripts"] = transcripts(result.pop("_prompts"))
    finally:
        for child in reversed(children):
            stop(child)
        log.close()
    lines = Path(log.name).read_text(errors="replace").splitlines()
    result["server_log"] = {
        "path": log.name,
        "warnings": sum(" WARNING " in line for line in lines),
        "errors": sum(" ERROR " in line or " CRITICAL " in line for line in lines),
    }
    config = {k: v for k, v in vars(args).items() if k not in ("json", "py_spy")}
    if args.server == "node":
        config["node_version"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return {"config": config, **result}


# --- output ---------------------------------------------------------------------------------
def table(result: dict) -> str:
    c, cpu, provider = result["config"], result["cpu_seconds"], result["provider"]
    server = {"daphne": "daphne", "node": f"node {c.get('node_version')}"}.get(
        c["server"], f"uvicorn --ws {c['ws']}"
    )
    lines = [
        f"{server}: {c['calls']} calls over {c['ramp']:g} s, {c['prompts']} prompts each "
        f"(the 3rd interrupted after {INTERRUPT_AFTER} tokens); fake: {c['ttft'] * 1000:g} ms to "
        f"first token, {c['rate']:g} tokens/s, {c['tokens']} tokens a reply; {c['chunking']} chunking",
        f"{'':36}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
    ]
    by_prompt = result["added_first_token_ms_by_prompt"]
    notes = {
        1: " (after setup)",
        INTERRUPTED_PROMPT + 1: " (interrupted)",
        INTERRUPTED_PROMPT + 2: " (right after interrupt)",
    }
    for label, s in (
        ("added first-token latency, ms", result["added_first_token_ms"]),
        *((f"  prompt {n}{notes.get(n, '')}", by_prompt[n]) for n in by_prompt),
        ("added inter-token delay, ms", result["added_inter_token_ms"]),
        ("fake alone: added first token, ms", result["fake_alone_first_token_ms"]),
        ("fake alone: added inter-token, ms", result["fake_alone_inter_token_ms"]),
        ("load generator's loop lag, ms", result["load_generator_loop_lag_ms"]),
        *(
            (("voice webhook response, ms", result["voice_webhook_ms"]),)
            if result["voice_webhook_ms"]
            else ()
        ),
    ):
        lines.append(
            f"{label:36}{s['n']:>7}" + "".join(f"{s.get(p, '-'):>9}" for p in ("p50", "p95", "p99", "max"))
        )
    replies, interrupts = result["replies"], result["interrupts"]
    errors = ", ".join(f"{name}: {count}" for name, count in result["errors"].items()) or "none"
    lines += [
        f"warm-up call (before the load)      added first-token latency {result['warm_up_added_first_token_ms']:g} ms",
        f"replies completed                   {replies['completed']} of {replies['expected']}",
        f"errors                              {errors}",
        f"old-reply tokens after interrupt    {result['old_reply_tokens_after_interrupt']}"
        f" (frames in flight when it was sent: {result['old_reply_frames_in_flight']},"
        f" the last {result['old_reply_in_flight_last_ms']:g} ms after it)",
        f"provider streams closed early       {provider_verdict(provider, interrupts)}",
        f"server CPU during the load          {cpu['server']:.1f} s user+sys"
        f" ({cpu['server'] / result['load_seconds']:.0%} of a core over {result['load_seconds']:g} s;"
        f" {cpu['server system']:.1f} s of it in the kernel)",
        f"server RSS                          peak {result['server_rss_mb']['peak']:g} MB"
        f" (before the load {result['server_rss_mb']['before']:g} MB)",
        f"server RSS by quarter of the load   {' / '.join(f'{v:g}' for v in result['server_rss_mb']['by_quarter'])} MB",
        f"other CPU during the load           fake {cpu['fake']:.1f} s, load generator"
        f" {cpu['load generator']:.1f} s, rest of the machine {cpu['rest of the machine']:.1f} s",
        f"stolen by the hypervisor            {cpu['stolen']:.1f} s of the vCPUs' time"
        f" ({cpu['stolen'] / (result['load_seconds'] * (os.cpu_count() or 1)):.0%})",
        f"transcripts                         {transcript_verdict(result)}",
        f"server log                          {result['server_log']['warnings']} warnings,"
        f" {result['server_log']['errors']} errors ({result['server_log']['path']})",
    ]
    return "\n".join(lines)


def transcript_verdict(result: dict) -> str:
    t, outage = result["transcripts"], result.get("postgres_outage")
    verdict = (
        f"{t['turns_lost']} turns lost, {t['calls_with_a_gap']} calls with a gap,"
        f" {t['calls_stored']} of {t['calls']} calls stored, {t['calls_not_ended']} not ended"
    )
    if outage:
        verdict += f" (PostgreSQL down {outage['down_s']:g} s from {outage['at_s']:g} s into the load)"
    return verdict


def provider_verdict(provider: dict, interrupts: int) -> str:
    closed, streams, completed = provider["closed_early"], provider["streams"], provider["completed"]
    sent_in_full = completed - (streams - interrupts)  # interrupted streams the fake had finished
    if closed == interrupts and sent_in_full == 0:
        return f"{closed} of {interrupts} interrupted streams, and no other"
    if sent_in_full > 0 and closed + sent_in_full == interrupts:
        return (
            f"{closed} of {interrupts} interrupted streams; the other {sent_in_full} completed,"
            " presumably sent in full before the server, that far behind, handled their interrupt"
        )
    return f"MISMATCH: {closed} closed early, {completed} of {streams} completed, {interrupts} interrupts"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="concurrent calls")
    parser.add_argument(
        "--server",
        choices=["daphne", "uvicorn", "node"],
        default="daphne",
        help="node: the Node.js baseline in bench/node_baseline (not the product)",
    )
    parser.add_argument(
        "--ws",
        default="websockets-sansio",
        help="uvicorn's websocket implementation (websockets: the legacy one)",
    )
    parser.add_argument("--prompts", type=int, default=4, help="prompts a call (at least 4)")
    parser.add_argument(
        "--pause", type=float, default=0.5, help="seconds between a reply and the next prompt"
    )
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which calls start")
    parser.add_argument("--ttft", type=float, default=0.3, help="the fake's seconds to first token")
    parser.add_argument("--rate", type=float, default=25.0, help="the fake's tokens a second")
    parser.add_argument("--tokens", type=int, default=50, help="the fake's tokens a reply")
    parser.add_argument(
        "--chunking", choices=["token", "phrase"], default="token", help="the persona's speech chunking"
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="each call first POSTs the signed voice webhook, as Twilio does, and binds its socket to it",
    )
    parser.add_argument(
        "--stop-postgres",
        type=float,
        metavar="SECONDS",
        help="stop the machine's PostgreSQL for SECONDS in the middle of the ramp (a restart under load;"
        " stops it for everyone on this machine)",
    )
    parser.add_argument(
        "--summaries-inside",
        action="store_true",
        help="no REDIS_URL for the server, as in the embedded run: each ended call's summary runs in"
        " the server process (against the fake model), beside the live calls",
    )
    parser.add_argument(
        "--agent",
        action="store_true",
        help="client-side replies: the persona's model is an agent process (bench/agent_forwarder.py,"
        " the SDK) streaming from the same fake",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--py-spy", metavar="FILE", help="profile the server during the load (its latencies then suffer)"
    )
    args = parser.parse_args()
    if args.prompts <= INTERRUPTED_PROMPT + 1 or args.tokens <= INTERRUPT_AFTER or args.calls < 1:
        parser.error("needs at least 4 prompts, more than 10 tokens a reply and 1 call")
    if args.server == "node":
        if not (NODE_BASELINE / "node_modules").is_dir():
            parser.error(
                "bench/node_baseline/node_modules is missing: run npm ci --prefix bench/node_baseline"
            )
        if args.py_spy:
            parser.error("--py-spy profiles a Python server, not node")
        if args.webhook:
            parser.error("--webhook needs the product: the node baseline has no voice webhook")
    return args


def main() -> None:
    args = parse_args()
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
