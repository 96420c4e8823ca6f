"""/api/v1/usage, /api/v1/stats and /api/v1/me on a real gateway (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.support.clients import assert_error, client_for
from tests.support.servers import RunningServer

CHAT = [{"role": "user", "content": "Tell me about accounting"}]


def admin_get(gateway: Gateway, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{gateway.url}{path}",
        params=params,
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, database_url: str) -> Gateway:
    return gateway_factory(database_url=database_url)


class Traffic:
    """Requests made through the gateway, and the usage the clients were told."""

    def __init__(self, gateway: Gateway, simulator: RunningServer) -> None:
        self.alice_id, self.alice_key = gateway.create_key("alice", daily_requests=100)
        self.bob_id, self.bob_key = gateway.create_key("bob", daily_tokens=100_000)
        self.usage: dict[tuple[str, str], list[int]] = {}
        self.reasons: dict[str, int] = {}
        alice, bob = client_for(gateway, self.alice_key), client_for(gateway, self.bob_key)
        for max_tokens in (3, 5, 7):
            answer = alice.chat.completions.create(
                model="sim-model", messages=CHAT, max_tokens=max_tokens
            )
            self._count(self.alice_id, "sim-model", answer.usage)
        answer = alice.completions.create(model="other-model", prompt="one two three")
        self._count(self.alice_id, "other-model", answer.usage)
        for _ in range(2):
            answer = bob.chat.completions.create(model="sim-model", messages=CHAT, max_tokens=4)
            self._count(self.bob_id, "sim-model", answer.usage)
        simulator.app.state.simulator.inject_failure(500)
        with pytest.raises(openai.InternalServerError):
            bob.chat.completions.create(model="sim-model", messages=CHAT)
        self._count(self.bob_id, "sim-model", None, error=True)
        # Refusals by the gateway itself: recorded, by reason, apart from the requests.
        with pytest.raises(openai.BadRequestError):
            bob.chat.completions.create(
                model="sim-model", messages=CHAT, extra_body={"priority": -5}
            )
        self._refused(self.bob_id, "sim-model", "unsupported_parameter")
        self.carol_id, carol_key = gateway.create_key("carol", models=["sim-model"], rpm=1)
        carol = client_for(gateway, carol_key)
        answer = carol.chat.completions.create(model="sim-model", messages=CHAT, max_tokens=2)
        self._count(self.carol_id, "sim-model", answer.usage)
        with pytest.raises(openai.PermissionDeniedError):
            carol.chat.completions.create(model="other-model", messages=CHAT)
        self._refused(self.carol_id, "other-model", "model_not_allowed")
        with pytest.raises(openai.RateLimitError):
            carol.chat.completions.create(model="sim-model", messages=CHAT)
        self._refused(self.carol_id, "sim-model", "requests_per_minute")
        with pytest.raises(openai.AuthenticationError):  # no key: counted, never a row
            client_for(gateway, "vgw-" + "x" * 44).chat.completions.create(
                model="sim-model", messages=CHAT
            )
        gateway.call(gateway.services.usage.flush())

    def _row(self, key_id: str, model: str) -> list[int]:
        return self.usage.setdefault((key_id, model), [0, 0, 0, 0, 0])

    def _count(self, key_id: str, model: str, usage: Any, error: bool = False) -> None:
        sums = self._row(key_id, model)
        sums[0] += 1
        sums[1] += error
        if usage is not None:
            sums[3] += usage.prompt_tokens
            sums[4] += usage.completion_tokens

    def _refused(self, key_id: str, model: str, reason: str) -> None:
        self._row(key_id, model)[2] += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def sums(self, key_id: str | None = None, model: str | None = None) -> dict[str, int]:
        rows = [
            sums
            for (k, m), sums in self.usage.items()
            if key_id in (None, k) and model in (None, m)
        ]
        requests, errors, rejected, prompt, completion = (
            sum(row[i] for row in rows) for i in range(5)
        )
        return {
            "requests": requests,
            "errors": errors,
            "rejected": rejected,
            "cancelled": 0,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cost_usd": 0.0,  # no prices are set here
        }


@pytest.fixture
def traffic(gateway: Gateway, simulator: RunningServer) -> Traffic:
    return Traffic(gateway, simulator)


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_usage_report_totals_series_and_breakdowns(gateway: Gateway, traffic: Traffic) -> None:
    report = admin_get(gateway, "/api/v1/usage")
    assert report["totals"] == traffic.sums()
    assert report["totals"]["requests"] == 8 and report["totals"]["errors"] == 1
    assert report["totals"]["rejected"] == 3
    assert report["rejected_by_reason"] == traffic.reasons
    assert report["until"] == today()
    assert len(report["daily"]) == 30
    assert report["daily"][-1] == {"day": today(), **traffic.sums()}
    assert all(day["requests"] == 0 for day in report["daily"][:-1])
    assert report["average_latency_ms"] > 0
    by_key = {row["key_id"]: row for row in report["by_key"]}
    assert by_key[traffic.alice_id] == {
        "key_id": traffic.alice_id,
        "name": "alice",
        **traffic.sums(traffic.alice_id),
    }
    assert by_key[traffic.bob_id]["name"] == "bob"
    # Busiest first: alice made 4 requests, bob 3, carol 1.
    assert [row["key_id"] for row in report["by_key"]] == [
        traffic.alice_id,
        traffic.bob_id,
        traffic.carol_id,
    ]
    by_model = {row["model"]: row for row in report["by_model"]}
    assert by_model["other-model"] == {"model": "other-model", **traffic.sums(model="other-model")}

    only_bob = admin_get(gateway, "/api/v1/usage", key_id=traffic.bob_id)
    assert only_bob["totals"] == traffic.sums(traffic.bob_id)
    assert [row["key_id"] for row in only_bob["by_key"]] == [traffic.bob_id]
    assert [row["model"] for row in only_bob["by_model"]] == ["sim-model"]
    other = admin_get(gateway, "/api/v1/usage", model="other-model")
    assert other["totals"] == traffic.sums(model="other-model")
    tomorrow = (date.fromisoformat(today()) + timedelta(days=1)).isoformat()
    later = admin_get(gateway, "/api/v1/usage", since=tomorrow, until=tomorrow)
    assert later["totals"]["requests"] == 0 and later["daily"] == [
        {"day": tomorrow, **{name: 0 for name in traffic.sums()}}
    ]


def test_stats_show_today_the_last_hour_and_recent_requests(
    gateway: Gateway, traffic: Traffic
) -> None:
    stats = admin_get(gateway, "/api/v1/stats")
    assert stats["today"] == {"day": today(), **traffic.sums()}
    assert len(stats["per_minute"]) == 60
    assert sum(point["requests"] for point in stats["per_minute"]) == 8
    assert sum(point["errors"] for point in stats["per_minute"]) == 1
    assert sum(point["rejected"] for point in stats["per_minute"]) == 3
    assert stats["rejected_by_reason"] == traffic.reasons
    assert sum(point["tokens"] for point in stats["per_minute"]) == traffic.sums()["total_tokens"]
    assert stats["last_hour"] == traffic.sums()
    assert stats["error_rate"] == pytest.approx(1 / 8)
    latency = stats["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert stats["in_flight"] == 0
    assert (stats["active_keys"], stats["enabled_keys"]) == (3, 3)
    assert {row["name"] for row in stats["top_keys"]} == {"alice", "bob", "carol"}
    assert {row["model"] for row in stats["top_models"]} == {"sim-model", "other-model"}
    recent = stats["recent"]
    assert len(recent) == 11  # every request of a known key, refusals included
    assert [row["time"] for row in recent] == sorted((row["time"] for row in recent), reverse=True)
    assert recent[0]["status"] == 429 and recent[0]["key_name"] == "carol"
    assert (recent[0]["admitted"], recent[0]["reason"]) == (False, "requests_per_minute")
    failed = next(row for row in recent if row["status"] == 502)
    assert failed["key_name"] == "bob" and failed["admitted"]  # a backend 5xx, as 502
    assert recent[-1]["key_name"] == "alice" and recent[-1]["completion_tokens"] == 3
    first = recent[-1]
    assert first["total_tokens"] == first["prompt_tokens"] + first["completion_tokens"]
    assert first["route"] == "/v1/chat/completions" and first["stream"] is False


def test_stats_without_traffic(gateway: Gateway) -> None:
    stats = admin_get(gateway, "/api/v1/stats")
    assert stats["today"]["requests"] == 0 and stats["error_rate"] == 0
    assert stats["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert stats["recent"] == [] and stats["top_keys"] == []


def test_reports_never_contain_secrets(gateway: Gateway, traffic: Traffic) -> None:
    for path in ("/api/v1/usage", "/api/v1/stats"):
        text = str(admin_get(gateway, path))
        for secret in (traffic.alice_key, traffic.bob_key, gateway.admin_key, BACKEND_KEY):
            assert secret not in text


@pytest.mark.parametrize("path", ["/api/v1/usage", "/api/v1/stats"])
def test_reports_need_the_admin(gateway: Gateway, path: str) -> None:
    _, client_key = gateway.create_key("client")
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {client_key}"},
    ):
        response = httpx.get(f"{gateway.url}{path}", headers=headers)
        assert_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01"}, "until"),
        ({"since": "2025-02-02", "until": "2025-02-01"}, "since"),
        ({"since": "1990-01-01", "until": "2025-01-01"}, "since"),
    ],
)
def test_bad_ranges_are_400(gateway: Gateway, params: dict[str, str], param: str) -> None:
    response = httpx.get(
        f"{gateway.url}/api/v1/usage",
        params=params,
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    )
    assert assert_error(response, 400, "invalid_request")["param"] == param


def test_me_shows_a_key_its_own_usage_only(gateway: Gateway, traffic: Traffic) -> None:
    for headers in (
        {"x-api-key": traffic.alice_key},
        {"authorization": f"Bearer {traffic.alice_key}"},
    ):
        response = httpx.get(f"{gateway.url}/api/v1/me", headers=headers)
        assert response.status_code == 200, response.text
        me = response.json()
        assert (me["id"], me["name"], me["models"], me["expires_at"]) == (
            traffic.alice_id,
            "alice",
            [],
            None,
        )
        assert me["limits"] == {
            "daily_requests": 100,
            "rpm": None,
            "daily_tokens": None,
            "max_concurrency": None,
            "daily_budget_usd": None,
            "monthly_budget_usd": None,
        }
        alice = traffic.sums(traffic.alice_id)
        assert me["today"] == {
            "day": today(),
            **alice,
            "requests_remaining": 100 - alice["requests"],
            "tokens_remaining": None,
        }
        assert len(me["daily"]) == 30 and me["daily"][-1]["day"] == today()
        assert sum(day["requests"] for day in me["daily"]) == alice["requests"]
        assert traffic.bob_id not in response.text and "bob" not in response.text
    bob = httpx.get(f"{gateway.url}/api/v1/me", headers={"x-api-key": traffic.bob_key}).json()
    assert (
        bob["today"]["tokens_remaining"] == 100_000 - traffic.sums(traffic.bob_id)["total_tokens"]
    )
    assert bob["today"]["requests_remaining"] is None


def test_me_needs_a_valid_client_key(gateway: Gateway) -> None:
    key_id, key = gateway.create_key("leaving")
    response = httpx.get(f"{gateway.url}/api/v1/me")
    assert_error(response, 401, "invalid_api_key")
    response = httpx.get(
        f"{gateway.url}/api/v1/me", headers={"authorization": f"Bearer {gateway.admin_key}"}
    )
    assert_error(response, 401, "invalid_api_key")
    gateway.call(gateway.services.keys.revoke(key_id))
    response = httpx.get(f"{gateway.url}/api/v1/me", headers={"x-api-key": key})
    assert_error(response, 403, "key_revoked")
