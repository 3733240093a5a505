"""Load benchmark of the Media Streams socket: N concurrent simulated phone calls streaming audio
both ways against one server, with voice activity detection running on every caller frame.

Workload. ONE uvicorn process (uvloop, httptools, websockets' sans-I/O implementation, as
bench/relay_load.py starts it) serves the real ASGI app on PostgreSQL (database
switchboard_media_bench, created and migrated first; its default persona is switched to Media
Streams), DEBUG off, Redis DB 9 as the Celery broker. The persona's model is the fake Anthropic API
(fakes/anthropic_server.py --tagged: --ttft to the first token, --rate tokens/s, --tokens a
reply), its speech-to-text the offline demo recogniser (no network; end of turn still comes from
the server's Silero VAD), its text-to-speech the fake Together realtime server
(fakes/realtime_tts_server.py: --ms-per-char of 24 kHz audio per character of text). Each call
POSTs the signed voice webhook, opens the signed stream from the TwiML and plays Twilio with
calls/simulator/media.py: 20 ms frames on a real-time clock, recorded speech clips separated by
silence, marks echoed when their audio has played, `clear` honoured. Calls start evenly over
--ramp seconds and each hangs up after --seconds. Every --barge-every'th call talks over the
agent ("barge"): say hello, then as soon as the answer plays, say "interrupt" over it. The others
wait for each answer to finish before speaking again.

Figures (client side, monotonic clock):
- barge-in latency: first voiced frame of the barge clip sent -> `clear` received;
- end-of-turn latency: last frame of a caller utterance sent -> first agent audio after it (the
  persona's end-of-turn silence, the fake's time to first token and synthesis included);
- outbound frames received, short frames in the middle of a phrase (a gap) and marks out of
  order (reordering), which should both be 0;
- server CPU seconds (user+sys, psutil) over the load and peak RSS (sampled every 100 ms), and
  calls per core: N / (server CPU seconds / wall seconds).

Run (PostgreSQL on 127.0.0.1:5432, user postgres; nothing leaves 127.0.0.1):
    .venv/bin/python -m bench.media_load --calls 200 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import psycopg
import redis
import uvloop

from bench.relay_load import (
    BENCH_SECRET_KEY,
    REDIS_URL,
    ROOT,
    child_env,
    cpu_seconds,
    free_ports,
    mb,
    spread,
    stop,
    wait_until_ready,
)
from calls.frames import MAX_FRAME_CHARS
from calls.simulator.media import MediaCaller, SimulatorError, parse_script, simulate_media_call

DATABASE = "switchboard_media_bench"  # not relay_load's: its default persona stays ConversationRelay
TWILIO_TOKEN = "bench-token"
BARGER = "listen 10; say hello; barge interrupt; listen 10; say thanks; listen 10; wait 1"
TALKER = "listen 10; say hello; listen 10; say thanks; listen 10; wait 1"
CONNECT = {"proxy": None, "ping_interval": None, "compression": None, "open_timeout": 30, "close_timeout": 5}


def script(barge: bool, seconds: float) -> str:
    cycle = BARGER if barge else TALKER
    return "; ".join([cycle] * max(1, int(seconds // 5) + 1))  # more than enough: the deadline ends it


async def one_call(n: int, args: argparse.Namespace, base: str, results: list, errors: Counter) -> None:
    await asyncio.sleep(n * args.ramp / args.calls)
    barge = args.barge_every > 0 and n % args.barge_every == 0
    try:
        caller = await simulate_media_call(
            base_url=base,
            public_base_url=base,
            token=TWILIO_TOKEN,
            from_number=f"+1555{n:07d}",
            to_number="+15550002222",
            steps=parse_script(script(barge, args.seconds)),
            seconds=args.seconds,
            connect_options=CONNECT,
        )
    except SimulatorError as exc:
        errors[str(exc)[:80]] += 1
        return
    except (OSError, TimeoutError) as exc:
        errors[type(exc).__name__] += 1
        return
    results.append(caller)
    if caller.stats.closed_by_server:
        errors[f"closed by the server ({caller.stats.close_code})"] += 1


def server_processes(server: psutil.Process) -> list[psutil.Process]:
    """The server and, with --workers, the worker processes uvicorn runs under it."""
    return [server, *server.children(recursive=True)]


def tree_rss(processes: list[psutil.Process]) -> int:
    return sum(p.memory_info().rss for p in processes)


async def sample(server: list[psutil.Process], done: asyncio.Event, rss: list[int]) -> None:
    while not done.is_set():
        try:
            rss.append(tree_rss(server))
        except psutil.NoSuchProcess:
            return
        await asyncio.sleep(0.1)


async def load(args: argparse.Namespace, base: str, pids: dict[str, int]) -> dict:
    # A warm-up call first: the server's first call pays for loading the VAD model and imports.
    warm_started = time.monotonic()
    warm: list[MediaCaller] = []
    warm_errors: Counter[str] = Counter()
    warm_args = argparse.Namespace(**{**vars(args), "calls": 1, "seconds": 8, "barge_every": 0})
    await one_call(0, warm_args, base, warm, warm_errors)
    if not warm:
        raise SystemExit(f"the warm-up call failed: {dict(warm_errors)}")
    warm_ms = (time.monotonic() - warm_started) * 1000
    processes = {name: psutil.Process(pid) for name, pid in pids.items()} | {
        "load generator": psutil.Process()
    }
    server = server_processes(processes.pop("server"))
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    server_before = [cpu_seconds(p) for p in server]
    rss_before = tree_rss(server)
    rss = [rss_before]
    done = asyncio.Event()
    sampler = asyncio.create_task(sample(server, done, rss))
    results: list[MediaCaller] = []
    errors: Counter[str] = Counter()
    started = time.monotonic()
    tasks = [asyncio.create_task(one_call(n, args, base, results, errors)) for n in range(args.calls)]
    _, late = await asyncio.wait(tasks, timeout=args.ramp + args.seconds + 60)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    if late:
        errors["cut by the run's time bound"] += len(late)
    elapsed = time.monotonic() - started
    cpu = {name: cpu_seconds(p) - before[name] for name, p in processes.items()}
    cpu["server"] = sum(cpu_seconds(p) - b for p, b in zip(server, server_before, strict=True))
    done.set()
    await sampler
    return summarise(args, results, errors, elapsed, cpu, rss_before, max(rss), warm[0], warm_ms)


def summarise(
    args: argparse.Namespace,
    results: list[MediaCaller],
    errors: Counter[str],
    elapsed: float,
    cpu: dict[str, float],
    rss_before: int,
    rss_peak: int,
    warm: MediaCaller,
    warm_ms: float,
) -> dict:
    utterances = [u for caller in results for u in caller.stats.utterances]
    barges = [u for u in utterances if u.barge]
    stats = [caller.stats for caller in results]
    # Server CPU over the whole load: "cores busy" is CPU seconds per wall second.
    cores = cpu["server"] / elapsed if elapsed else 0.0
    return {
        "calls": args.calls,
        "seconds": args.seconds,
        "completed": len(results),
        "errors": dict(errors),
        "load_seconds": round(elapsed, 1),
        "warm_up_ms": round(warm_ms),
        "warm_up_first_audio_ms": round((warm.stats.first_audio_at - warm.stats.started_at) * 1000)
        if warm.stats.first_audio_at and warm.stats.started_at
        else None,
        "barge_in_ms": spread([u.barge_in_ms for u in barges if u.barge_in_ms is not None]),
        "barges": len(barges),
        # A barge the call's end cut short is not a miss: only whole clips over audio count.
        "barges_without_clear": sum(
            u.barge_in_ms is None and u.agent_playing and u.last_frame_at is not None for u in barges
        ),
        "barges_with_nothing_playing": sum(not u.agent_playing for u in barges),
        "end_of_turn_ms": spread([u.end_of_turn_ms for u in utterances if u.end_of_turn_ms is not None]),
        "utterances": len(utterances),
        # Whole utterances with no answer, leaving out those ended in a call's last 5 s.
        "utterances_unanswered": sum(
            u.end_of_turn_ms is None and u.last_frame_at is not None and u.last_frame_at < ends - 5
            for caller in results
            if (ends := (caller.stats.started_at or 0) + args.seconds)
            for u in caller.stats.utterances
        ),
        "frames_sent": sum(s.frames_sent for s in stats),
        "worst_send_lag_ms": round(max((s.max_send_lag_ms for s in stats), default=0), 1),
        "frames_received": sum(s.media_received for s in stats),
        "audio_received_s": round(sum(s.bytes_received for s in stats) / 8000, 1),
        "payload_sizes": dict(sum((s.sizes for s in stats), Counter()).most_common(4)),
        "short_frames_mid_phrase": sum(s.short_mid_phrase for s in stats),
        "marks_out_of_order": sum(s.marks_out_of_order for s in stats),
        "marks": sum(len(s.marks) for s in stats),
        "marks_echoed": sum(s.marks_echoed for s in stats),
        "marks_echoed_on_clear": sum(m.cleared for s in stats for m in s.marks),
        "clears": sum(len(s.clears) for s in stats),
        "other_events": dict(sum((s.other_events for s in stats), Counter())),
        "cpu_seconds": {name: round(seconds, 2) for name, seconds in cpu.items()},
        "server_cores_busy": round(cores, 2),
        "calls_per_core": round(args.calls / cores, 1) if cores else None,
        "server_rss_mb": {"before": mb(rss_before), "peak": mb(rss_peak)},
    }


def prepare_database(env: dict[str, str], tts_url: str) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            db.execute(f'CREATE DATABASE "{DATABASE}"')
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=180)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}", autocommit=True) as db:
        updated = db.execute(
            "UPDATE agents_persona SET transport = 'media', stt_provider = 'demo', stt_api_key_env = '',"
            " stream_tts_provider = 'together', stream_tts_base_url = %s, stream_tts_api_key_env = '',"
            " llm_provider = 'anthropic', llm_base_url = '', llm_api_key_env = '' WHERE is_default",
            [tts_url],
        ).rowcount
    if updated != 1:
        raise RuntimeError(f"{DATABASE} has no default persona to switch to Media Streams")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} was not open in {timeout} s")


def run(args: argparse.Namespace) -> dict:
    llm_port, tts_port, port = free_ports(3)
    llm_url, tts_url, base = (
        f"http://127.0.0.1:{llm_port}",
        f"ws://127.0.0.1:{tts_port}",
        f"http://127.0.0.1:{port}",
    )
    env = child_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        DEBUG="false",
        SECRET_KEY=BENCH_SECRET_KEY,
        ANTHROPIC_API_KEY="bench",
        ANTHROPIC_BASE_URL=llm_url,
        TOGETHER_API_KEY="bench",  # the persona's TTS key; the fake accepts any
        PUBLIC_BASE_URL=base,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        # INFO: the server logs each end of turn and barge-in with its own latency (one line per
        # turn, read back below); nothing is logged per frame.
        LOG_LEVEL="INFO",
        REDIS_URL=REDIS_URL,
    )
    prepare_database(env, tts_url)
    redis.Redis.from_url(REDIS_URL).flushdb()
    llm_command = [sys.executable, "-m", "fakes.anthropic_server", "--tagged", "--port", str(llm_port)]
    llm_command += ["--ttft", str(args.ttft), "--rate", str(args.rate), "--tokens", str(args.tokens)]
    tts_command = [sys.executable, "-m", "fakes.realtime_tts_server", "--vendor", "together"]
    tts_command += ["--port", str(tts_port), "--ms-per-char", str(args.ms_per_char), "--chunk-delay", "0.02"]
    server_command = [
        *(sys.executable, "-m", "uvicorn", "voiceproject.asgi:application"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "off"),
        *("--ws", "websockets-sansio", "--loop", "uvloop", "--http", "httptools"),
        *("--ws-max-size", str(MAX_FRAME_CHARS)),  # as the Dockerfile runs it
        *(("--workers", str(args.workers)) if args.workers > 1 else ()),
    ]
    log = tempfile.NamedTemporaryFile("w", prefix="bench-media-", suffix=".log", delete=False)  # noqa: SIM115
    children: list[subprocess.Popen] = []
    try:
        llm = subprocess.Popen(llm_command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL)
        children.append(llm)
        wait_until_ready(f"{llm_url}/stats", llm, 15)
        tts = subprocess.Popen(tts_command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL)
        children.append(tts)
        wait_for_port(tts_port, tts, 15)
        server = subprocess.Popen(server_command, cwd=ROOT, env=env, stdout=log, stderr=log)
        children.append(server)
        wait_until_ready(f"{base}/health/", server, 60)
        print(
            f"server pid {server.pid}, log {log.name}; {args.calls} calls for {args.seconds:g} s...",
            file=sys.stderr,
        )
        pids = {"server": server.pid, "fake LLM": llm.pid, "fake TTS": tts.pid}
        result = asyncio.run(load(args, base, pids), loop_factory=uvloop.new_event_loop)
    finally:
        for child in reversed(children):
            stop(child)
        log.close()
    lines = Path(log.name).read_text(errors="replace").splitlines()
    # The server's own share, from the frame's arrival to the action (calls/media/session.py).
    result["server_end_of_turn_ms"] = spread(
        [float(m) for line in lines if (m := _after(line, "end of turn committed "))]
    )
    result["server_barge_in_ms"] = spread(
        [float(m) for line in lines if (m := _after(line, "barge-in cleared "))]
    )
    result["server_log"] = {
        "path": log.name,
        "warnings": sum(" WARNING " in line for line in lines),
        "errors": sum(" ERROR " in line or " CRITICAL " in line or "Traceback" in line for line in lines),
    }
    return result


def _after(line: str, marker: str) -> str | None:
    """The number right after `marker` in a server log line, if the line has it."""
    at = line.find(marker)
    return line[at + len(marker) :].split(" ", 1)[0] if at >= 0 else None


def table(r: dict) -> str:
    def row(label: str, s: dict) -> str:
        return f"{label:34}{s['n']:>7}" + "".join(f"{s.get(p, '-'):>9}" for p in ("p50", "p95", "p99", "max"))

    cpu = r["cpu_seconds"]
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
    return "\n".join(
        [
            f"media streams, uvicorn: {r['calls']} calls x {r['seconds']:g} s "
            f"({r['completed']} completed; load {r['load_seconds']:g} s)",
            f"{'':34}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
            row("barge-in latency, ms", r["barge_in_ms"]),
            row("end-of-turn latency, ms", r["end_of_turn_ms"]),
            row("  server: last speech -> commit", r["server_end_of_turn_ms"]),
            row("  server: speech onset -> clear", r["server_barge_in_ms"]),
            f"barges                            {r['barges']} ({r['barges_without_clear']} over audio without"
            f" a clear, {r['barges_with_nothing_playing']} with nothing playing)",
            f"utterances                        {r['utterances']} ({r['utterances_unanswered']} unanswered)",
            f"caller frames sent                {r['frames_sent']} (worst send lag {r['worst_send_lag_ms']} ms)",
            f"agent frames received             {r['frames_received']} ({r['audio_received_s']} s of audio;"
            f" sizes {r['payload_sizes']})",
            f"dropped / reordered               {r['short_frames_mid_phrase']} short frames mid-phrase,"
            f" {r['marks_out_of_order']} marks out of order, other events {r['other_events'] or 0}",
            f"marks                             {r['marks']} received, {r['marks_echoed']} echoed"
            f" ({r['marks_echoed_on_clear']} on {r['clears']} clears)",
            f"errors                            {errors}",
            f"server CPU                        {cpu['server']:.1f} s user+sys = {r['server_cores_busy']} cores"
            f" busy; {r['calls_per_core']} calls per core",
            f"server RSS                        peak {r['server_rss_mb']['peak']} MB"
            f" (before the load {r['server_rss_mb']['before']} MB)",
            f"other CPU                         fake LLM {cpu['fake LLM']:.1f} s, fake TTS {cpu['fake TTS']:.1f} s,"
            f" load generator {cpu['load generator']:.1f} s (of {os.cpu_count()} cores)",
            f"warm-up call                      first agent audio {r['warm_up_first_audio_ms']} ms after start",
            f"server log                        {r['server_log']['warnings']} warnings,"
            f" {r['server_log']['errors']} errors ({r['server_log']['path']})",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="concurrent calls")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each call lasts")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which calls start")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (1: the issue's one)"
    )
    parser.add_argument("--barge-every", type=int, default=2, help="every Nth call barges in (0: none)")
    parser.add_argument("--ttft", type=float, default=0.3, help="the fake model's seconds to first token")
    parser.add_argument("--rate", type=float, default=25.0, help="the fake model's tokens a second")
    parser.add_argument("--tokens", type=int, default=20, help="the fake model's tokens a reply")
    parser.add_argument(
        "--ms-per-char", type=float, default=60.0, help="the fake voice's audio per character"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.calls < 1 or not 1 <= args.seconds <= 600:
        parser.error("needs at least 1 call, and 1 to 600 seconds a call")
    return args


def main() -> None:
    args = parse_args()
    for name in [k for k in os.environ if "proxy" in k.lower()]:
        del os.environ[name]  # loopback only: urllib (the voice webhook) would follow them
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
