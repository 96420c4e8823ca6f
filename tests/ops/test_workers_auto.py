"""`serve --workers auto`: one worker per core this process may use, sharing limits in Redis."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from tests.conftest import BACKEND_KEY, GatewayFactory
from tests.support.cli import Cli
from tests.support.processes import start_gateway, worker_pids
from tests.support.servers import RunningServer
from vllm_gateway.settings import Settings

CHAT = [{"role": "user", "content": "hello"}]


def test_auto_starts_one_worker_per_core_and_they_share_the_limits(
    gateway_factory: GatewayFactory,
    simulator: RunningServer,
    sqlite_database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    keeper = gateway_factory()
    _, key = keeper.create_key(daily_requests=5)
    gateway = start_gateway(
        tmp_path,
        "auto",
        backend_url=f"{simulator.url}/v1",
        backend_key=BACKEND_KEY,
        database_url=sqlite_database_url,
        admin_key=keeper.admin_key,
        redis_url=redis_url,
        args=("--workers", "auto"),
    )
    try:
        assert len(worker_pids(gateway.popen.pid)) == len(os.sched_getaffinity(0))
        statuses = [
            httpx.post(
                f"{gateway.url}/v1/chat/completions",
                json={"model": "sim-model", "messages": CHAT, "max_tokens": 2},
                headers={"x-api-key": key},
                timeout=30,
            ).status_code
            for _ in range(7)
        ]
        assert statuses == [200] * 5 + [429] * 2  # one daily limit, whichever worker answers
    finally:
        gateway.stop()


def test_auto_without_redis_is_refused_plainly(
    sqlite_database_url: str, tmp_path: Path, redis_url: str
) -> None:
    result = Cli(sqlite_database_url, tmp_path, VLLM_URL="http://127.0.0.1:9/v1")(
        "serve", "--workers", "auto", check=False
    )
    assert result.returncode != 0
    assert "GATEWAY_WORKERS=auto needs REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ValidationError):
        Settings(_env_file=None, gateway_workers="auto")  # type: ignore[call-arg]
    assert Settings(
        _env_file=None,  # type: ignore[call-arg]
        gateway_workers="auto",
        redis_url=redis_url,
    ).worker_count == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("workers", ["0", "65", "many"])
def test_a_bad_worker_count_is_a_usage_error(
    workers: str, sqlite_database_url: str, tmp_path: Path
) -> None:
    result = Cli(sqlite_database_url, tmp_path)("serve", "--workers", workers, check=False)
    assert result.returncode == 2
    assert "nor auto" in result.stderr
