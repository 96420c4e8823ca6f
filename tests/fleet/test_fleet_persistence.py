"""Run-time fleet changes outlive a restart and reach instances that share the database."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Gateway
from tests.fleet.conftest import GatewayStarter, Sim, chat, fleet_file, seen_by
from tests.support.processes import start_gateway as start_process_gateway


def _admin(gateway: Gateway, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    answer = httpx.request(
        method, f"{gateway.url}/api/v1/backends{path}", headers=headers, timeout=30, **kwargs
    )
    assert answer.status_code in (200, 201), answer.text
    return answer


def _states(gateway: Gateway) -> dict[str, str]:
    return {b.name: b.state(time.monotonic()) for b in gateway.services.backends.backends}


def test_changes_made_at_run_time_are_applied_again_after_a_restart(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    path = fleet_file(tmp_path / "f.toml", sims[:2])  # sim0, sim1; the database is tmp_path's
    first = start_gateway(path, gateway_routing="round_robin")
    _admin(first, "POST", "/sim0/drain")
    _admin(first, "DELETE", "/sim1")
    added = {"url": f"{sims[2].url}/v1", "name": "sim2", "api_key": sims[2].key}
    _admin(first, "POST", "", json=added)
    _admin(first, "POST", "", json={**added, "name": "extra"})
    _admin(first, "DELETE", "/extra")  # added, then removed: gone for good
    first.server.stop()

    second = start_gateway(path, gateway_routing="round_robin")  # a real restart, same database
    assert _states(second) == {"sim0": "draining", "sim2": "up"}
    _, key = second.create_key()
    answers = [chat(second, key, f"after restart {i}") for i in range(4)]
    assert {a.status_code for a in answers} == {200}
    ids = {a.headers["x-request-id"] for a in answers}
    assert seen_by(sims, ids) == [0, 0, 4]  # sim2 got its own key back from the database
    _admin(second, "POST", "/sim0/resume")
    second.server.stop()

    third = start_gateway(path, gateway_routing="round_robin")
    assert _states(third) == {"sim0": "up", "sim2": "up"}


def test_the_fleet_file_wins_the_settings_of_a_name_it_now_names(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    path = fleet_file(tmp_path / "f.toml", sims[:1])
    first = start_gateway(path)
    _admin(first, "POST", "", json={"url": f"{sims[1].url}/v1", "name": "b", "api_key": "x"})
    first.server.stop()
    text = path.read_text() + f'[[backends]]\nurl = "{sims[1].url}/v1"\nname = "b"\n'
    path.write_text(text + f'api_key = "{sims[1].key}"\nweight = 3\n')
    second = start_gateway(path)
    backend = second.services.backends.by_name("b")
    assert backend is not None and backend.weight == 3
    assert backend.auth_header == f"Bearer {sims[1].key}"


def test_instances_sharing_a_database_converge_without_redis(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path, database_url: str
) -> None:
    path = fleet_file(tmp_path / "f.toml", sims[:2])
    shared = {"database_url": database_url, "gateway_fleet_refresh": 0.2}
    first = start_gateway(path, **shared)
    second = start_gateway(path, **shared)  # the same database (SQLite, then PostgreSQL), no Redis
    _admin(first, "POST", "/sim1/drain")
    deadline = time.monotonic() + 5
    while _states(second)["sim1"] != "draining":
        assert time.monotonic() < deadline, "the drain did not reach the other instance"
        time.sleep(0.05)
    _admin(second, "POST", "/sim1/resume")
    while _states(first)["sim1"] != "up":
        assert time.monotonic() < deadline, "the resume did not reach the first instance"
        time.sleep(0.05)


def test_a_real_restart_of_a_two_worker_gateway_keeps_the_changes(
    sims: list[Sim], tmp_path: Path, redis_url: str
) -> None:
    path = fleet_file(tmp_path / "f.toml", sims[:2])
    admin = "admin-" + secrets.token_hex(16)
    options: dict[str, Any] = {
        "backend_url": "http://127.0.0.1:9/v1",  # unused: the fleet file names the backends
        "backend_key": "unused",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "admin_key": admin,
        "redis_url": redis_url,  # workers need it (limits); fleet changes also cross on it
        "args": ("--workers", "2"),
        "backends_file": str(path),
        "fleet_refresh": "0.2",
    }
    headers = {"Authorization": f"Bearer {admin}"}

    def every_worker_shows(url: str, states: dict[str, str]) -> None:
        deadline, agreeing = time.monotonic() + 10, 0
        while agreeing < 8:  # eight answers in a row, from whichever worker takes each
            answer = httpx.get(f"{url}/api/v1/backends", headers=headers, timeout=5).json()
            shown = {row["name"]: row["state"] for row in answer["data"]}
            agreeing = agreeing + 1 if shown == states else 0
            assert time.monotonic() < deadline, shown
            time.sleep(0.05)

    first = start_process_gateway(tmp_path, "first", **options)
    try:
        drained = httpx.post(f"{first.url}/api/v1/backends/sim1/drain", headers=headers, timeout=10)
        assert drained.status_code == 200, drained.text
        every_worker_shows(first.url, {"sim0": "up", "sim1": "draining"})
    finally:
        assert first.stop() == 0
    second = start_process_gateway(tmp_path, "second", **options)  # both workers start anew
    try:
        every_worker_shows(second.url, {"sim0": "up", "sim1": "draining"})
    finally:
        second.stop()
