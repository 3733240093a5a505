"""CPU per token of the provider path alone: the SDK's request plus reading the stream.

The relay benchmark (bench/relay_load.py) measures the whole server; this isolates the part a
provider owns, so a change to it can be judged in seconds. A fake provider runs in its own process
streaming at a steady pace; this process runs C concurrent replies through the real provider class
(the real SDK, pointed at the fake) into a ReplyStream whose sink does nothing, and prints this
process's CPU time per token and per request. Two runs separate the two costs: replies of
`--tokens` tokens, then replies of one token (nearly all request).

    .venv/bin/python -m bench.token_path [--provider anthropic|openai] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from fakes.replies import stream_reply

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_fake(provider: str, tokens: int, rate: float) -> tuple[subprocess.Popen, str]:
    module = {"anthropic": "fakes.anthropic_server", "openai": "fakes.openai_server"}[provider]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            "--port",
            "0",
            "--ttft",
            "0",
            "--rate",
            str(rate),
            "--tokens",
            str(tokens),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = fake.stdout.readline().strip().split()[-1]  # type: ignore[union-attr]
    return fake, url


async def run(provider_name: str, url: str, concurrency: int, replies: int) -> tuple[int, int, float]:
    from agents.llm.anthropic import AnthropicProvider
    from agents.llm.base import ChatMessage, LLMProvider
    from agents.llm.openai import OpenAIProvider
    from agents.models import Persona
    from calls.engine.reply import ReplyStream

    persona = Persona(name="Bench", slug="bench", llm_model="fake", max_tokens=100)
    provider: LLMProvider
    if provider_name == "anthropic":
        provider = AnthropicProvider.shared(api_key="bench", base_url=url)
    else:
        persona.llm_provider = Persona.LlmProvider.OPENAI
        provider = OpenAIProvider.shared(api_key="bench", base_url=url)
    messages: list[ChatMessage] = [{"role": "user", "content": "Hello"}]
    tokens = 0

    async def sink(text: str) -> None:
        nonlocal tokens
        tokens += 1

    async def worker(count: int) -> None:
        for _ in range(count):
            await stream_reply(provider, persona=persona, messages=messages, reply=ReplyStream(sink))

    await asyncio.gather(*(worker(2) for _ in range(concurrency)))  # warm: connections, imports
    tokens = 0
    started = cpu_seconds()
    await asyncio.gather(*(worker(replies // concurrency) for _ in range(concurrency)))
    return tokens, replies // concurrency * concurrency, cpu_seconds() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--provider", choices=["anthropic", "openai"], default="anthropic")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=50, help="tokens a reply in the first run")
    parser.add_argument("--replies", type=int, default=1000)
    # Paced, so that each token arrives alone as it does from a real model (unpaced, the fake's
    # writes coalesce and several tokens share one read).
    parser.add_argument("--rate", type=float, default=100.0, help="the fake's tokens a second, per reply")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")
    import django
    import uvloop

    django.setup()
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise
    results = {}
    for tokens in (args.tokens, 1):
        fake, url = start_fake(args.provider, tokens, args.rate)
        try:
            results[tokens] = uvloop.run(run(args.provider, url, args.concurrency, args.replies))
        finally:
            fake.terminate()
            fake.wait()
    long_tokens, long_replies, long_cpu = results[args.tokens]
    _, short_replies, short_cpu = results[1]
    per_request = short_cpu / short_replies
    per_token = (long_cpu - per_request * long_replies) / long_tokens
    print(f"{args.provider}: {args.concurrency} concurrent replies, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"  replies of {args.tokens} tokens: {long_cpu / long_tokens * 1e6:7.1f} µs of CPU a token, all in")
    print(f"  replies of 1 token:     {per_request * 1e3:7.2f} ms of CPU a request")
    print(f"  stream reading alone:   {per_token * 1e6:7.1f} µs of CPU a token")


if __name__ == "__main__":
    main()
