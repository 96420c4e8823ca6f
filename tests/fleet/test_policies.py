"""Each routing policy over three real simulator processes, each with its own backend key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fleet.conftest import GatewayStarter, Sim, chat, fleet_file, seen_by
from vllm_gateway.routing.backend import Backend
from vllm_gateway.routing.policies import CacheAware, LeastLoaded, rendezvous

LONG_SYSTEM = " ".join(f"rule{i}" for i in range(400))  # ~2.7 KB: longer than the hashed prefix


def _ids(responses: list) -> set[str]:  # type: ignore[type-arg]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return {r.headers["x-request-id"] for r in responses}


def test_round_robin_follows_the_weights_and_each_backend_gets_its_own_key(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    text = (
        fleet_file(tmp_path / "f.toml", sims)
        .read_text()
        .replace('name = "sim0"', 'name = "sim0"\nweight = 2', 1)
    )
    (tmp_path / "f.toml").write_text(text)
    gateway = start_gateway(tmp_path / "f.toml", gateway_routing="round_robin")
    _, key = gateway.create_key()
    ids = _ids([chat(gateway, key, f"q{i}") for i in range(20)])
    assert seen_by(sims, ids) == [10, 5, 5]
    for index, sim in enumerate(sims):  # a wrong key would have been a 401 (502 to us)
        seen = [r for r in sim.requests() if r["request_id"] in ids]
        assert {r["headers"].get("authorization") for r in seen} <= {f"Bearer {sims[index].key}"}


def test_least_loaded_sends_less_to_a_slow_backend(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims), gateway_routing="least_loaded")
    _, key = gateway.create_key()
    sims[0].speed(20)  # 16 tokens take ~0.8 s there; the others answer at once
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: chat(gateway, key, f"q{i}", max_tokens=16), range(48)))
    counts = seen_by(sims, _ids(responses))
    assert sum(counts) == 48
    assert counts[0] <= 8, counts  # round robin would send it 16


def test_cache_aware_keeps_a_shared_prefix_on_one_backend_and_spreads_the_rest(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims))  # cache_aware: the default
    _, key = gateway.create_key()
    shared = [
        chat(gateway, key, f"{LONG_SYSTEM} question {i}") for i in range(9)
    ]  # the same first 2 KiB, different questions
    counts = seen_by(sims, _ids(shared))
    assert sorted(counts) == [0, 0, 9], counts
    varied = _ids([chat(gateway, key, f"topic {i} " * 40) for i in range(24)])
    assert sum(1 for count in seen_by(sims, varied) if count) >= 2


def test_sessions_stick_by_user_field_or_header(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims), gateway_routing="least_loaded")
    _, key = gateway.create_key()
    for session in ("alice", "bob", "carol"):
        by_user = _ids([chat(gateway, key, f"turn {i}", user=session) for i in range(5)])
        assert sorted(seen_by(sims, by_user))[-1] == 5
        headers = {"x-session-id": f"s-{session}"}
        by_header = _ids([chat(gateway, key, f"turn {i}", headers=headers) for i in range(5)])
        assert sorted(seen_by(sims, by_header))[-1] == 5


def test_cache_aware_leaves_an_overloaded_affine_backend_for_the_least_loaded(
    sims: list[Sim], start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    gateway = start_gateway(fleet_file(tmp_path / "f.toml", sims), gateway_affinity_margin=2)
    _, key = gateway.create_key()
    for sim in sims:
        sim.speed(40)  # every request takes ~0.4 s: in-flight counts build up
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(lambda i: chat(gateway, key, f"{LONG_SYSTEM} q{i}", max_tokens=16), range(12))
        )
    counts = seen_by(sims, _ids(responses))
    assert max(counts) < 12 and sum(1 for c in counts if c) >= 2, counts
    assert max(counts) >= 4, counts  # the affine backend still took its share first


def test_an_overloaded_affine_backend_hands_its_key_to_the_same_second_choice() -> None:
    backends = [Backend(f"b{i}", f"http://b{i}") for i in range(4)]
    policy = CacheAware(margin=2)
    for n in range(20):
        key = f"conversation {n}".encode()
        first, second, *_ = rendezvous(backends, key)
        assert policy.affine(backends, key) is first
        first.in_flight = 10  # overloaded next to idle ones
        second.in_flight = 1  # busier than the lightest, but within the bound
        for _ in range(3):  # every time the same fallback, not whichever is least loaded
            assert policy.affine(backends, key) is second
        first.in_flight = second.in_flight = 0


def test_a_session_stays_on_its_backend_however_busy_or_slow_it_is() -> None:
    backends = [Backend(f"b{i}", f"http://b{i}") for i in range(4)]
    for policy in (LeastLoaded(margin=2), CacheAware(margin=2)):
        for n in range(20):
            session = f"user-{n}".encode()
            first = policy.order(backends, b"some prompt", session)[0]
            first.in_flight, first.relative_cost = 50, 4.0  # busy, and measured slow
            assert policy.order(backends, b"another prompt", session)[0] is first
            first.in_flight, first.relative_cost = 0, 1.0
