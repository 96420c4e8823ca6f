"""`vllm-gateway usage` on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.cli import Cli, CliResult

CHAT = [{"role": "user", "content": "bill me"}]


def usage_cli(database_url: str, cwd: Path, *args: str) -> CliResult:
    return Cli(database_url, cwd)("usage", *args, check=False)


@pytest.fixture
def billed(
    gateway_factory: GatewayFactory, database_url: str
) -> tuple[Gateway, dict[str, tuple[str, int, int, int]]]:
    """Two keys' traffic; per key: (id, requests, prompt tokens, completion tokens)."""
    gateway = gateway_factory(database_url=database_url)
    served = {}
    for name, count in (("north", 3), ("south", 2)):
        key_id, key = gateway.create_key(name, rpm=count)
        prompt = completion = 0
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
            for n in range(count):
                answer = client.chat.completions.create(
                    model="sim-model", messages=CHAT, max_tokens=n + 2
                )
                assert answer.usage is not None
                prompt += answer.usage.prompt_tokens
                completion += answer.usage.completion_tokens
            with pytest.raises(openai.RateLimitError):  # refused: in the books apart
                client.chat.completions.create(model="sim-model", messages=CHAT, max_tokens=2)
        served[name] = (key_id, count, prompt, completion)
    gateway.call(gateway.services.usage.flush())
    return gateway, served


def test_json_totals_and_rows_per_day(
    billed: tuple[Gateway, dict[str, tuple[str, int, int, int]]],
    database_url: str,
    tmp_path: Path,
) -> None:
    _, served = billed
    result = usage_cli(database_url, tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    requests = sum(s[1] for s in served.values())
    prompt = sum(s[2] for s in served.values())
    completion = sum(s[3] for s in served.values())
    assert (report["requests"], report["prompt_tokens"], report["completion_tokens"]) == (
        requests,
        prompt,
        completion,
    )
    assert report["total_tokens"] == prompt + completion
    assert (report["rejected"], report["errors"]) == (2, 0)
    assert report["rejected_by_reason"] == {"requests_per_minute": 2}
    today = datetime.now(UTC).date().isoformat()
    rows = {row["key_id"]: row for row in report["days"]}
    for key_id, count, key_prompt, key_completion in served.values():
        assert rows[key_id] == {
            "day": today,
            "key_id": key_id,
            "model": "sim-model",
            "requests": count,
            "errors": 0,
            "rejected": 1,
            "cancelled": 0,
            "prompt_tokens": key_prompt,
            "completion_tokens": key_completion,
            "cost_usd": 0.0,  # no price set
        }

    north_id = served["north"][0]
    only = json.loads(usage_cli(database_url, tmp_path, "--json", "--key", north_id).stdout)
    assert [row["key_id"] for row in only["days"]] == [north_id]
    assert only["requests"] == 3
    later = json.loads(usage_cli(database_url, tmp_path, "--json", "--since", "2999-01-01").stdout)
    assert later["requests"] == 0 and later["days"] == []
    window = usage_cli(database_url, tmp_path, "--json", "--since", today, "--until", today)
    assert json.loads(window.stdout)["requests"] == requests


def test_csv_and_table(
    billed: tuple[Gateway, dict[str, tuple[str, int, int, int]]],
    database_url: str,
    tmp_path: Path,
) -> None:
    _, served = billed
    result = usage_cli(database_url, tmp_path, "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "day",
        "key_id",
        "model",
        "requests",
        "errors",
        "rejected",
        "cancelled",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost_usd",
    ]
    by_key = {row["key_id"]: row for row in rows}
    key_id, count, prompt, completion = served["south"]
    assert by_key[key_id]["requests"] == str(count)
    assert by_key[key_id]["total_tokens"] == str(prompt + completion)

    table = usage_cli(database_url, tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "day",
        "key",
        "model",
        "requests",
        "errors",
        "rejected",
        "cancelled",
        "prompt",
        "completion",
        "total",
        "cost_usd",
    ]
    assert lines[-1].split()[:2] == ["total", "5"]
    assert any(served["north"][0] in line for line in lines)


def test_bad_arguments(database_url: str, tmp_path: Path) -> None:
    bad_date = usage_cli(database_url, tmp_path, "--since", "last week")
    assert bad_date.returncode == 2 and "not a date" in bad_date.stderr
    both = usage_cli(database_url, tmp_path, "--csv", "--json")
    assert both.returncode == 2
    backwards = usage_cli(database_url, tmp_path, "--since", "2025-02-02", "--until", "2025-02-01")
    assert backwards.returncode == 2
    empty = usage_cli(database_url, tmp_path)
    assert empty.returncode == 0 and "No usage" in empty.stdout
