"""Fair admission: a saturated fleet queues requests in the gateway, fairly across keys, bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway
from tests.fleet.conftest import MODEL, GatewayStarter, Sim, chat, fleet_file
from tests.support.usage import recorded_events


def _fire(
    gateway: Gateway, key: str, tag: str, done: dict[str, float], out: list
) -> threading.Thread:  # type: ignore[type-arg]
    def run() -> None:
        answer = chat(gateway, key, tag, max_tokens=6)
        done[tag] = time.monotonic()
        out.append(answer)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_quiet_key_is_served_between_a_noisy_keys_queued_requests(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims[:1], max_concurrency=1))
    _, noisy = gateway.create_key("noisy")
    _, quiet = gateway.create_key("quiet")
    sims[0].speed(10)  # 6 tokens: ~0.6 s each, one at a time
    done: dict[str, float] = {}
    answers: list[httpx.Response] = []
    threads = [_fire(gateway, noisy, f"noisy {i}", done, answers) for i in range(8)]
    pool = gateway.services.backends
    deadline = time.monotonic() + 10
    while pool.admission.waiting < 6:
        assert time.monotonic() < deadline, "the noisy key's requests did not queue"
        time.sleep(0.01)
    threads.append(_fire(gateway, quiet, "quiet", done, answers))
    for thread in threads:
        thread.join(30)
    assert [a.status_code for a in answers] == [200] * 9, [a.text for a in answers]
    later = [tag for tag, at in done.items() if tag != "quiet" and at > done["quiet"]]
    assert len(later) >= 4, done  # first come, first served would have put it last
    metrics = httpx.get(
        f"{gateway.url}/metrics",
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=5,
    ).text
    assert 'vgw_admission_wait_seconds_count{outcome="dispatched"}' in metrics


def test_the_queue_is_bounded_in_length_and_in_time(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(
        fleet_file(tmp_path / "f.toml", sims[:1], max_concurrency=1),
        gateway_queue_max=1,
        gateway_queue_timeout=2.0,  # the full queue is seen within 2 s, even on a slow machine
    )
    _, key = gateway.create_key()
    sims[0].speed(1)  # 6 tokens: ~6 s, past the waiting request's 2 s in the queue
    done: dict[str, float] = {}
    answers: list[httpx.Response] = []
    first = _fire(gateway, key, "running", done, answers)
    pool = gateway.services.backends
    while pool.by_name("sim0").in_flight == 0:
        time.sleep(0.01)
    second = _fire(gateway, key, "waiting", done, answers)
    while pool.admission.waiting == 0:
        time.sleep(0.01)
    full = chat(gateway, key, "no room in the queue")
    assert full.status_code == 503 and full.json()["error"]["code"] == "backends_saturated"
    assert full.headers["retry-after"]
    second.join(10)
    timed_out = answers[0]
    assert timed_out.status_code == 503 and timed_out.headers["retry-after"]
    first.join(30)
    assert answers[1].status_code == 200


def test_key_priority_is_set_shown_and_used_by_the_queue(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims[:1]))
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    created = httpx.post(
        f"{gateway.url}/api/v1/keys",
        json={"name": "vip", "priority": "high"},
        headers=admin,
        timeout=10,
    )
    assert created.status_code == 201 and created.json()["priority"] == "high"
    key_id, key = created.json()["id"], created.json()["key"]
    assert chat(gateway, key, "hi").status_code == 200
    principal = gateway.call(gateway.services.keys.authenticate(key))
    assert principal.priority == "high"
    changed = httpx.patch(
        f"{gateway.url}/api/v1/keys/{key_id}", json={"priority": "low"}, headers=admin, timeout=10
    )
    assert changed.status_code == 200 and changed.json()["priority"] == "low"
    wrong = httpx.patch(
        f"{gateway.url}/api/v1/keys/{key_id}",
        json={"priority": "urgent"},
        headers=admin,
        timeout=10,
    )
    assert wrong.status_code == 400, wrong.text


def test_a_client_that_leaves_the_queue_is_gone_from_it_at_once_and_booked_cancelled(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims[:1], max_concurrency=1))
    key_id, key = gateway.create_key()
    sims[0].speed(4)  # 6 tokens: ~1.5 s
    done: dict[str, float] = {}
    answers: list[httpx.Response] = []
    running = _fire(gateway, key, "running", done, answers)
    pool = gateway.services.backends
    deadline = time.monotonic() + 10
    while pool.by_name("sim0").in_flight == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # A real client that gives up after 0.3 s closes its connection while it waits in the queue.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "impatient"}]},
            headers={"x-api-key": key},
            timeout=httpx.Timeout(5.0, read=0.3),
        )
    left = time.monotonic()
    while pool.admission.waiting:
        assert time.monotonic() - left < 0.5, "the gone client still holds its place"
        time.sleep(0.01)
    assert pool.by_name("sim0").in_flight == 1  # only the running request
    running.join(30)
    assert answers[0].status_code == 200
    cancelled = recorded_events(gateway, key_id=key_id, status=499)
    assert len(cancelled) == 1, cancelled
    event = cancelled[0]
    assert event["reason"] == "client_closed" and not event["admitted"]
    assert event["backend"] == "" and event["queued_ms"] >= 200
    assert event["request_id"] not in sims[0].generation_ids()  # never dispatched
    assert pool.by_name("sim0").in_flight == 0
    totals = httpx.get(
        f"{gateway.url}/api/v1/usage",
        params={"key_id": key_id},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
        timeout=10,
    ).json()["totals"]
    assert (totals["requests"], totals["cancelled"], totals["errors"], totals["rejected"]) == (
        1,
        1,
        0,
        0,
    ), totals  # the books: one served, one cancelled, neither an error nor a refusal
