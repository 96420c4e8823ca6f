"""The fleet bench's workloads: what each simulated client sends, and what it measures.

Every request is a streamed chat completion, so time to first token is the first content
chunk. Prompts are made of distinct words (the simulator counts one token per word).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

MODEL = "bench-model"


@dataclass
class Sample:
    """One finished request."""

    key: str
    ok: bool
    ttft: float
    latency: float


@dataclass
class Run:
    """The samples of one workload run."""

    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0


def words(prefix: str, count: int) -> str:
    """`count` distinct words (tokens)."""
    return " ".join(f"{prefix}{i}" for i in range(count))


async def _stream(
    session: aiohttp.ClientSession, url: str, key: str, messages: list[dict[str, str]], tokens: int
) -> Sample:
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": tokens,
        "stream": True,
        "ignore_eos": True,
    }
    started = time.perf_counter()
    ttft = None
    try:
        async with session.post(
            f"{url}/v1/chat/completions",
            data=orjson.dumps(body),
            headers={"x-api-key": key, "content-type": "application/json"},
        ) as response:
            ok = response.status == 200
            async for line in response.content:
                if ttft is None and line.startswith(b"data: {") and b'"content"' in line:
                    ttft = time.perf_counter() - started
            latency = time.perf_counter() - started
    except aiohttp.ClientError:
        ok, latency = False, time.perf_counter() - started
    return Sample(key, ok, ttft if ttft is not None else latency, latency)


async def uniform(url: str, key: str, requests: int, concurrency: int) -> Run:
    """Independent requests with unrelated prompts, `concurrency` at a time."""
    run, queue = Run(), list(range(requests))
    rng = random.Random(1)

    async def client(session: aiohttp.ClientSession) -> None:
        while queue:
            n = queue.pop()
            prompt = words(f"u{n}x{rng.randrange(10**6)}w", 200)
            run.samples.append(
                await _stream(session, url, key, [{"role": "user", "content": prompt}], 32)
            )

    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run


@dataclass
class SessionShape:
    """The multi-turn workload: how many chats, how long, how many shared system prompts."""

    count: int = 32
    turns: int = 10
    systems: int = 16
    system_words: int = 500
    user_words: int = 40
    assistant_words: int = 40
    stagger: float = 0.1  # seconds between chat starts (they arrive over time)
    think: float = 0.4  # a user reads and types for up to this long between turns


async def sessions(url: str, key: str, shape: SessionShape) -> Run:
    """Multi-turn chats; each of the system prompts is shared by several of them."""
    run = Run()
    system_prompts = [words(f"sys{s}w", shape.system_words) for s in range(shape.systems)]

    async def chat(session: aiohttp.ClientSession, number: int) -> None:
        rng = random.Random(number)
        await asyncio.sleep(number * shape.stagger)
        messages = [{"role": "system", "content": system_prompts[number % shape.systems]}]
        for turn in range(shape.turns):
            question = words(f"s{number}t{turn}q", shape.user_words)
            messages.append({"role": "user", "content": question})
            run.samples.append(await _stream(session, url, key, messages, 16))
            answer = words(f"s{number}t{turn}a", shape.assistant_words)
            messages.append({"role": "assistant", "content": answer})
            await asyncio.sleep(rng.uniform(0, shape.think))  # users do not move in lockstep

    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(chat(session, n) for n in range(shape.count)))
    run.seconds = time.perf_counter() - started
    return run


async def keyed_load(url: str, clients: dict[str, int], seconds: float) -> Run:
    """Closed-loop clients per key (key -> how many at once) for `seconds`."""
    run = Run()
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, key: str, number: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            prompt = words(f"k{key[-6:]}c{number}n{n}w", 100)
            run.samples.append(
                await _stream(session, url, key, [{"role": "user", "content": prompt}], 24)
            )
            n += 1

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=300)
    ) as session:
        await asyncio.gather(
            *(client(session, key, i) for key, count in clients.items() for i in range(count))
        )
    run.seconds = time.perf_counter() - started
    return run
