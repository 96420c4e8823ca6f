"""Drain, resume, add and remove without a restart (admin API and CLI); aliases with weights."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from tests.conftest import Gateway
from tests.fleet.conftest import MODEL, GatewayStarter, Sim, chat, fleet_file, seen_by
from tests.support.clients import client_for
from vllm_gateway.cli import cli


def _cli(gateway: Gateway, *args: str) -> str:
    """The real command, in this process (a subprocess costs seconds of imports), over HTTP."""
    result = CliRunner().invoke(
        cli,
        ["backends", "--gateway", gateway.url, *args],
        env={"GATEWAY_ADMIN_KEY": gateway.admin_key},
    )
    assert result.exit_code == 0, result.output
    return result.output


def _admin(gateway: Gateway, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    return httpx.request(
        method, f"{gateway.url}/api/v1/backends{path}", headers=headers, timeout=30, **kwargs
    )


def _ids(gateway: Gateway, key: str, count: int, tag: str) -> set[str]:
    answers = [chat(gateway, key, f"{tag} {i}") for i in range(count)]
    assert [a.status_code for a in answers] == [200] * count, answers[-1].text
    return {a.headers["x-request-id"] for a in answers}


def test_drain_lets_requests_in_flight_finish_and_sends_new_ones_elsewhere(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(
        fleet_file(tmp_path / "f.toml", sims[:2]), gateway_routing="round_robin"
    )
    _, key = gateway.create_key()
    # The admin app is built on its first request (a second on a slow machine): built now,
    # the drain below lands while the slow request is still running.
    assert _admin(gateway, "GET", "").status_code == 200
    sims[0].speed(20)
    slow: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: slow.append(chat(gateway, key, "slow", max_tokens=30)))
    thread.start()  # round robin's first pick: sim0, for ~1.5 s
    pool = gateway.services.backends
    while pool.by_name("sim0").in_flight == 0:
        assert thread.is_alive()
    drained = _admin(gateway, "POST", "/sim0/drain").json()
    assert drained["state"] == "draining" and drained["in_flight"] == 1
    assert seen_by(sims[:2], _ids(gateway, key, 6, "while draining")) == [0, 6]
    thread.join(30)
    assert slow[0].status_code == 200 and slow[0].json()["choices"][0]["finish_reason"]
    listing = _cli(gateway, "list")
    assert "routing: round_robin" in listing and "draining" in listing
    assert "sim1: draining, 0 request(s) in flight" in _cli(gateway, "drain", "sim1")
    refused = chat(gateway, key, "nowhere to go")
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert "sim1: up" in _cli(gateway, "resume", "sim1")
    assert "sim0: up" in _cli(gateway, "resume", "sim0")
    assert seen_by(sims[:2], _ids(gateway, key, 6, "resumed")) == [3, 3]


def test_backends_are_added_and_removed_at_run_time(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(
        fleet_file(tmp_path / "f.toml", sims[:1]), gateway_routing="round_robin"
    )
    _, key = gateway.create_key()
    added = _admin(
        gateway,
        "POST",
        "",
        json={"url": f"{sims[1].url}/v1", "name": "new", "api_key": sims[1].key},
    )
    assert added.status_code == 201, added.text
    assert added.json()["state"] == "up" and "api_key" not in added.text
    assert seen_by(sims[:2], _ids(gateway, key, 4, "added")) == [2, 2]
    duplicate = _admin(gateway, "POST", "", json={"url": f"{sims[1].url}/v1", "name": "new"})
    assert duplicate.status_code == 400 and duplicate.json()["error"]["code"] == "invalid_backend"
    bad = _admin(gateway, "POST", "", json={"url": "ftp://x", "name": "bad"})
    assert bad.status_code == 400
    assert _admin(gateway, "DELETE", "/new").status_code == 200
    assert seen_by(sims[:2], _ids(gateway, key, 4, "removed")) == [4, 0]
    missing = _admin(gateway, "POST", "/nope/drain")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{gateway.url}/api/v1/backends", timeout=5).status_code == 401


def test_alias_splits_by_weight_and_models_show_public_names(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    aliases = '\n[aliases]\nchat = { "m-a" = 80, "m-b" = 20 }\n'
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims, extra=aliases))
    _, key = gateway.create_key()
    answers = [chat(gateway, key, f"canary {i}", model="chat") for i in range(60)]
    assert {a.status_code for a in answers} == {200}
    ids = {a.headers["x-request-id"] for a in answers}
    sent = {
        r["request_id"]: r["json"]["model"]
        for sim in sims
        for r in sim.requests()
        if r["request_id"] in ids
    }
    assert len(sent) == 60
    canary = list(sent.values()).count("m-b")
    assert 3 <= canary <= 25, canary  # 12 expected: binomial(60, 0.2) stays in this range
    models = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": key}, timeout=5).json()
    names = {card["id"] for card in models["data"]}
    assert names == {"chat", "fleet-model"}


def test_an_aliased_answer_names_the_public_model_whole_and_streamed(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    aliases = '\n[aliases]\nchat = { "m-a" = 50, "m-b" = 50 }\n'
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims, extra=aliases))
    _, key = gateway.create_key()
    client = client_for(gateway, key)
    messages: list[Any] = [{"role": "user", "content": "which model are you"}]
    for _ in range(4):  # both targets of the split
        whole = client.chat.completions.create(model="chat", messages=messages, max_tokens=3)
        assert whole.model == "chat"
        chunks = list(
            client.chat.completions.create(
                model="chat",
                messages=messages,
                max_tokens=3,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert len(chunks) >= 3 and {c.model for c in chunks} == {"chat"}
        text = client.completions.create(model="chat", prompt="hi", max_tokens=2)
        assert text.model == "chat"
        stored = client.responses.create(model="chat", input="keep this", store=True)
        assert stored.model == "chat"
        assert client.responses.retrieve(stored.id).model == "chat"  # fetched later too
    other = start_gateway(tmp_path / "f.toml")  # another instance: the owner from the database
    assert client_for(other, key).responses.retrieve(stored.id).model == "chat"
    served = {r["json"]["model"] for sim in sims for r in sim.requests(50) if r["json"]}
    assert {"m-a", "m-b"} <= served  # the backends got their own names
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    assert plain.model == MODEL  # not an alias: relayed as the backend named it


def test_a_drain_through_one_instance_reaches_the_others_through_redis(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path, redis_url: str
) -> None:
    path = fleet_file(tmp_path / "f.toml", sims[:2])
    first = start_gateway(path, redis_url=redis_url)
    second = start_gateway(path, redis_url=redis_url)
    assert _admin(first, "POST", "/sim0/drain").status_code == 200
    other = second.services.backends.by_name("sim0")
    deadline = time.monotonic() + 5
    while not other.draining:
        assert time.monotonic() < deadline, "the drain did not reach the other instance"
        time.sleep(0.02)
    assert _admin(second, "POST", "/sim0/resume").status_code == 200
    mine = first.services.backends.by_name("sim0")
    while mine.draining:
        assert time.monotonic() < deadline, "the resume did not reach the first instance"
        time.sleep(0.02)
