"""Money through a real gateway: prices, the cost of every usage event, a team's budget that
stops its keys within one request's worst case, and alerts to a real local webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import client_for
from tests.support.servers import RunningServer, serve
from vllm_gateway.cli import cli

ALERT_SECRET = "alert-secret-" + "s" * 20
CHAT = [{"role": "user", "content": "Hello there"}]


class Receiver:
    """A webhook endpoint that refuses its first delivery (500) to exercise the retries."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0

    async def hook(self, request: Request) -> JSONResponse:
        self.attempts += 1
        if self.attempts == 1:
            return JSONResponse({"error": "try again"}, status_code=500)
        self.received.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, RunningServer]]:
    hook = Receiver()
    app = Starlette(routes=[Route("/hook", hook.hook, methods=["POST"])])
    with serve(app) as server:
        yield hook, server


def admin(gateway: Gateway) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.admin_key}"}


def wait_for(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_a_team_budget_stops_its_keys_and_alerts_reach_the_webhook(
    gateway_factory: GatewayFactory,
    receiver: tuple[Receiver, RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook, server = receiver
    gateway = gateway_factory(
        gateway_alert_webhook=f"{server.url}/hook", gateway_alert_secret=ALERT_SECRET
    )
    # $10 / $20 per million tokens: a prompt of ~3 tokens and max_tokens 10 is ~$0.0002.
    price = httpx.put(
        f"{gateway.url}/api/v1/prices/sim-model",
        json={"input_per_million": 10, "output_per_million": 20},
        headers=admin(gateway),
    )
    assert price.status_code == 200, price.text
    budget = 0.002
    team = httpx.post(
        f"{gateway.url}/api/v1/teams",
        json={"name": "billing", "monthly_budget_usd": budget},
        headers=admin(gateway),
    ).json()
    _, key = gateway.create_key(team_id=team["id"])
    served = 0
    with client_for(gateway, key) as client:
        for _ in range(40):
            try:
                client.chat.completions.create(model="sim-model", messages=CHAT, max_tokens=10)
            except openai.RateLimitError as refused:
                body: Any = refused.body
                assert body["code"] == "insufficient_quota"
                assert "team" in body["message"]
                break
            served += 1
        else:
            pytest.fail("the budget never stopped the key")
    assert served >= 3
    gateway.call(gateway.services.usage.flush())
    usage = httpx.get(f"{gateway.url}/api/v1/teams/{team['id']}/usage", headers=admin(gateway))
    spent = usage.json()["cost_usd"]
    assert usage.json()["requests"] == served
    # Never over the budget, and stopped only when the next worst case would not fit.
    worst_case = (16 * 10 + 10 * 20) / 1e6  # a generous bound on one request's worst case
    assert budget - worst_case <= spent <= budget
    # Alerts at 80% (from the books) and 100% (the budget refused a request), each once,
    # each signed; the first delivery was refused by the receiver and sent again.
    wait_for(lambda: len(hook.received) >= 2)
    thresholds = []
    for headers, raw in hook.received:
        payload = json.loads(raw)
        assert payload["type"] == "budget.threshold"
        assert payload["subject_kind"] == "team" and payload["subject_id"] == team["id"]
        assert payload["period"] == "month" and payload["budget_usd"] == budget
        signed = headers["x-gateway-timestamp"].encode() + b"." + raw
        expected = hmac.new(ALERT_SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert headers["x-gateway-signature"] == f"sha256={expected}"
        thresholds.append(payload["threshold_percent"])
    assert sorted(thresholds) == [80, 100]
    assert hook.attempts == 3  # one refused (500), then both delivered
    alerts = httpx.get(f"{gateway.url}/api/v1/alerts", headers=admin(gateway)).json()["data"]
    assert {(a["subject_id"], a["threshold"]) for a in alerts} == {
        (team["id"], 80),
        (team["id"], 100),
    }

    # The CLI's books show the same cost, per day in JSON and CSV, and per team.
    monkeypatch.setenv("DATABASE_URL", gateway.settings.database_url or "")
    runner = CliRunner()
    as_json = runner.invoke(cli, ["usage", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["cost_usd"] == pytest.approx(spent, abs=1e-6)
    as_csv = runner.invoke(cli, ["usage", "--csv"])
    header = as_csv.output.splitlines()[0]
    assert "cost_usd" in header.split(",")
    by_team = json.loads(runner.invoke(cli, ["usage", "--by", "team", "--json"]).output)
    assert by_team[0]["team_id"] == team["id"]
    assert by_team[0]["cost_usd"] == pytest.approx(spent, abs=1e-6)


def test_prices_from_a_gpu_show_their_arithmetic(gateway: Gateway) -> None:
    answer = httpx.put(
        f"{gateway.url}/api/v1/prices/local-model",
        json={"gpu_hourly_usd": 2.5, "gpu_tokens_per_second": 1500},
        headers=admin(gateway),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["input_per_million"] == pytest.approx(2.5 / (1500 * 3600) * 1e6)
    assert "5,400,000 tokens/h" in body["derivation"]
    bad = httpx.put(
        f"{gateway.url}/api/v1/prices/local-model",
        json={"input_per_million": -1, "output_per_million": 1},
        headers=admin(gateway),
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input_per_million"
