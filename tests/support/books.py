"""The books as a client and as the database see them, for tests of exactness under load."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import asyncpg
import httpx


async def hammer(
    urls: list[str], key: str, attempts: int, connections: int, verify: bool | ssl.SSLContext = True
) -> list[tuple[int, int, int]]:
    """`attempts` chat requests (a third streamed) over `connections` connections, spread over
    `urls`; per request (status, prompt tokens, completion tokens) as the client was told."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    results: list[tuple[int, int, int]] = []
    async with httpx.AsyncClient(
        limits=limits, timeout=60, verify=verify, headers={"authorization": f"Bearer {key}"}
    ) as client:
        gate = asyncio.Semaphore(connections)

        async def one(index: int) -> None:
            body = {
                "model": "sim-model",
                "messages": [{"role": "user", "content": f"request number {index}"}],
                "max_tokens": 1 + index % 7,
                "stream": index % 3 == 0,
            }
            if body["stream"]:
                body["stream_options"] = {"include_usage": True}
            async with gate:
                url = urls[index % len(urls)] + "/v1/chat/completions"
                response = await client.post(url, json=body)
            if response.status_code != 200:
                results.append((response.status_code, 0, 0))
                return
            usage = usage_of(response)
            results.append((200, usage["prompt_tokens"], usage["completion_tokens"]))

        await asyncio.gather(*(one(index) for index in range(attempts)))
    return results


def usage_of(response: httpx.Response) -> dict[str, int]:
    if response.headers["content-type"].startswith("application/json"):
        usage: dict[str, int] = response.json()["usage"]
        return usage
    for line in reversed(response.text.splitlines()):
        if line.startswith("data: {") and '"usage"' in line:
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                found: dict[str, int] = chunk["usage"]
                return found
    raise AssertionError("stream without a usage chunk")


async def recorded(postgres_url: str, key_id: str) -> dict[str, Any]:
    """A key's books in PostgreSQL: its admitted events, its refusals and its daily rollup."""
    dsn = "postgresql://" + postgres_url.split("://", 1)[1]
    connection = await asyncpg.connect(dsn)
    try:
        events = await connection.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT request_id) AS ids, "
            "coalesce(sum(prompt_tokens), 0) AS p, coalesce(sum(completion_tokens), 0) AS c, "
            "count(*) FILTER (WHERE status <> 200) AS failed "
            "FROM usage_events WHERE key_id = $1 AND admitted",
            key_id,
        )
        refusals = await connection.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT request_id) AS ids, "
            "count(*) FILTER (WHERE status = 429 AND reason = 'requests_per_day') AS daily "
            "FROM usage_events WHERE key_id = $1 AND NOT admitted",
            key_id,
        )
        daily = await connection.fetchrow(
            "SELECT coalesce(sum(requests), 0) AS n, coalesce(sum(prompt_tokens), 0) AS p, "
            "coalesce(sum(completion_tokens), 0) AS c, coalesce(sum(rejected), 0) AS r "
            "FROM usage_daily WHERE key_id = $1",
            key_id,
        )
    finally:
        await connection.close()
    return {"events": dict(events), "refusals": dict(refusals), "daily": dict(daily)}
