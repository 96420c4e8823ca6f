"""A team's limit is exact across two workers of each of two instances sharing PostgreSQL and
Redis: the team is a second subject of the same atomic limiter call as each key."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.databases import fresh_postgres
from tests.support.processes import Process, cli_env, start, start_gateway
from tests.support.servers import free_port

BACKEND_KEY = "team-backend-" + "k" * 20
ADMIN_KEY = "team-admin-" + "a" * 24
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
TEAM_DAILY = 30
KEY_DAILY = 25  # each key alone would allow more: only the team's limit can stop them at 30
KEYS = 3
ATTEMPTS = 120


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Process]:
    port = free_port()
    args = ["simulator", "--port", str(port), "--model", "sim-model", "--tokens-per-second", "0"]
    process = start(args, cli_env(VLLM_API_KEY=BACKEND_KEY), tmp_path / "simulator.log", port)
    try:
        process.wait_ready("/health")
        yield process
    finally:
        process.stop()


async def hammer(urls: list[str], keys: list[str]) -> list[int]:
    """ATTEMPTS chat requests over 24 connections, spread over gateways and keys."""
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=60) as client:
        gate = asyncio.Semaphore(24)

        async def one(index: int) -> None:
            body = {
                "model": "sim-model",
                "messages": [{"role": "user", "content": f"hello {index}"}],
                "max_tokens": 2,
            }
            headers = {"authorization": f"Bearer {keys[index % len(keys)]}"}
            async with gate:
                url = urls[index % len(urls)] + "/v1/chat/completions"
                response = await client.post(url, json=body, headers=headers)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert "team" in response.json()["error"]["message"], response.text

        await asyncio.gather(*(one(index) for index in range(ATTEMPTS)))
    return statuses


async def booked(postgres_url: str, team_id: str) -> tuple[int, int]:
    """(admitted events, usage_daily requests) of the team's keys, from PostgreSQL."""
    connection = await asyncpg.connect("postgresql://" + postgres_url.split("://", 1)[1])
    try:
        events = await connection.fetchval(
            "SELECT count(*) FROM usage_events WHERE team_id = $1 AND admitted", team_id
        )
        daily = await connection.fetchval(
            "SELECT coalesce(sum(requests), 0) FROM usage_daily WHERE key_id IN "
            "(SELECT id FROM api_keys WHERE team_id = $1)",
            team_id,
        )
    finally:
        await connection.close()
    return int(events), int(daily)


@pytest.mark.timeout(240)
def test_a_team_limit_is_exact_across_workers_and_instances(
    tmp_path: Path, backend: Process, redis_url: str
) -> None:
    with fresh_postgres() as postgres_url:
        gateways = [
            start_gateway(
                tmp_path,
                f"gateway{n}",
                backend_url=f"{backend.url}/v1",
                backend_key=BACKEND_KEY,
                database_url=postgres_url,
                admin_key=ADMIN_KEY,
                redis_url=redis_url,
                args=("--workers", "2"),
                usage_flush_interval="0.2",
                log_level="warning",
            )
            for n in range(2)
        ]
        try:
            team = httpx.post(
                f"{gateways[0].url}/api/v1/teams",
                json={"name": "research", "daily_requests": TEAM_DAILY},
                headers=ADMIN,
            )
            assert team.status_code == 201, team.text
            team_id = team.json()["id"]
            keys = []
            for n in range(KEYS):
                created = httpx.post(
                    f"{gateways[1].url}/api/v1/keys",
                    json={"name": f"member {n}", "daily_requests": KEY_DAILY, "team_id": team_id},
                    headers=ADMIN,
                )
                assert created.status_code == 201, created.text
                assert created.json()["team_id"] == team_id
                keys.append(created.json()["key"])
            statuses = asyncio.run(hammer([gateway.url for gateway in gateways], keys))
            assert (statuses.count(200), statuses.count(429)) == (
                TEAM_DAILY,
                ATTEMPTS - TEAM_DAILY,
            )
            listed = httpx.get(f"{gateways[1].url}/api/v1/teams/{team_id}", headers=ADMIN)
            assert listed.json()["key_count"] == KEYS
        finally:
            codes = [gateway.stop() for gateway in gateways]
        assert all(code in (0, -signal.SIGTERM) for code in codes), codes
        # The books agree with the limiter: exactly the team's limit was served.
        assert asyncio.run(booked(postgres_url, team_id)) == (TEAM_DAILY, TEAM_DAILY)
