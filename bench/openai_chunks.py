"""What one streamed chunk costs the client: the openai SDK's typed chunks vs its raw lines.

Starts the fake OpenAI server in its own process (so its work is not counted) with replies of
`--tokens` chunks sent as fast as possible, then times, in CPU seconds of this process, reading
whole replies three ways: the typed `ChatCompletionChunk` objects, the raw response's lines with
`json.loads` (close to what agents/llm/openai.py does: it splits the raw bytes itself), and the raw
lines alone (the floor).

    .venv/bin/python -m bench.openai_chunks --tokens 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import openai
from openai.types.chat import ChatCompletionMessageParam

ROOT = Path(__file__).resolve().parent.parent
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


async def typed(client: openai.AsyncOpenAI) -> int:
    count = 0
    stream = await client.chat.completions.create(model="fake", messages=MESSAGES, max_tokens=10, stream=True)
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
    return count


async def raw_json(client: openai.AsyncOpenAI) -> int:
    count = 0
    async with client.chat.completions.with_streaming_response.create(
        model="fake", messages=MESSAGES, max_tokens=10, stream=True
    ) as response:
        async for line in response.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    count += 1
    return count


async def raw_lines(client: openai.AsyncOpenAI) -> int:
    count = 0
    async with client.chat.completions.with_streaming_response.create(
        model="fake", messages=MESSAGES, max_tokens=10, stream=True
    ) as response:
        async for line in response.iter_lines():
            count += line.startswith("data: {")
    return count - 2  # the role chunk and the finish chunk carry no text


async def measure(base_url: str, tokens: int, rounds: int) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    ways = {
        "typed ChatCompletionChunk": typed,
        "raw lines + json.loads": raw_json,
        "raw lines only": raw_lines,
    }
    for way in ways.values():
        await way(client)  # warm up: connection, imports, pydantic model building
    for name, way in ways.items():
        best = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            count = await way(client)
            best = min(best, time.process_time() - started)
        assert count >= tokens, (name, count)
        print(f"{name:28} {best / tokens * 1e6:6.1f} µs per chunk (best of {rounds}, CPU time)")
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    fake = ["fakes.openai_server", "--port", str(args.port), "--ttft", "0", "--rate", "0"]
    server = subprocess.Popen(
        [sys.executable, "-m", *fake, "--tokens", str(args.tokens)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        asyncio.run(measure(base_url, args.tokens, args.rounds))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
