"""The engine model: batch limit and FIFO queue, prefix cache, batch slowdown, KV usage.

Times are the engine's modelled ones (SequenceStats), never measured ones: the tests stay
deterministic on a busy machine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.simulator.helpers import wait_for
from tests.support.servers import RunningServer, serve
from vllm_gateway.simulator import SimulatorConfig, SimulatorState, create_simulator_app
from vllm_gateway.simulator.engine import Engine, PrefixCache, block_hashes

LONG = " ".join(f"w{i}" for i in range(200))  # 200 tokens: 12 full blocks and 8 tokens


def sim(**config: Any) -> Any:
    return serve(create_simulator_app(SimulatorConfig(**config)))


def state_of(server: RunningServer) -> SimulatorState:
    simulator: SimulatorState = server.app.state.simulator
    return simulator


def scrape(server: RunningServer) -> dict[str, tuple[str, list[Any]]]:
    """Metric families by name: (type, samples)."""
    text = httpx.get(f"{server.url}/metrics").text
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def value(server: RunningServer, sample_name: str, **labels: str) -> float:
    for _, samples in scrape(server).values():
        for sample in samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                return float(sample.value)
    raise AssertionError(f"no sample {sample_name}")


@contextmanager
def streams(server: RunningServer, count: int, body: dict[str, Any]) -> Iterator[list[str]]:
    """Open `count` streams at once, reading them on threads; closed on exit."""
    stop = threading.Event()
    ids = [f"stream-{i}" for i in range(count)]

    def read(request_id: str) -> None:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/completions",
            json={**body, "stream": True},
            headers={"X-Request-Id": request_id},
            timeout=30,
        ) as response:
            for _ in response.iter_raw():
                if stop.is_set():
                    return

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in ids]
    for thread in threads:
        thread.start()
    try:
        yield ids
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def test_blocks_chain_and_the_cache_is_an_lru() -> None:
    prompt = list(range(100, 150))  # 3 full blocks of 16, 2 tokens left over
    root = b"r" * 16
    hashes = block_hashes(prompt, root, 16)
    assert len(hashes) == 3
    changed_first = block_hashes([7, *prompt[1:]], root, 16)
    assert all(a != b for a, b in zip(hashes, changed_first, strict=True))  # chained
    assert block_hashes(prompt, b"s" * 16, 16)[0] != hashes[0]  # salted by the root
    cache = PrefixCache(capacity_blocks=3)
    cache.insert(hashes[:2])
    assert cache.hits(hashes) == 2
    assert cache.hits(changed_first) == 0  # same later tokens, other first block: no hit
    cache.insert(hashes)
    cache.insert([b"x" * 16])  # evicts the least recently used
    assert cache.hits(hashes) == 0 and cache.hits([b"x" * 16]) == 1


def test_requests_beyond_the_batch_limit_wait_in_order() -> None:
    with sim(tokens_per_second=5, max_num_seqs=2) as server:
        body = {"prompt": "x", "max_tokens": 50, "ignore_eos": True}
        with streams(server, 4, body):
            assert wait_for(lambda: value(server, "vllm:num_requests_waiting") == 2)
            assert value(server, "vllm:num_requests_running") == 2
            state = state_of(server)
            assert state.active == 4 and len(state.engine.running) == 2
        assert wait_for(lambda: value(server, "vllm:num_requests_running") == 0)
        assert value(server, "vllm:num_requests_waiting") == 0
        assert value(server, "vllm:request_success_total", finished_reason="abort") == 4


def test_a_full_kv_cache_holds_requests_back() -> None:
    with sim(tokens_per_second=5, max_num_seqs=8, kv_capacity_tokens=100) as server:
        body = {"prompt": " ".join(["word"] * 30), "max_tokens": 50, "ignore_eos": True}
        with streams(server, 4, body):
            assert wait_for(lambda: value(server, "vllm:num_requests_waiting") == 1)
            assert value(server, "vllm:num_requests_running") == 3
            assert value(server, "vllm:kv_cache_usage_perc") >= 0.9


def test_a_repeated_prompt_prefills_from_the_cache() -> None:
    with sim(tokens_per_second=50) as server, sim(tokens_per_second=50) as other:
        body = {"prompt": LONG, "max_tokens": 1}
        state = state_of(server)
        for _ in range(2):
            assert httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).is_success
        first, second = (r.sequence for r in state.requests[-2:])
        assert first is not None and second is not None
        assert (first.cached_tokens, second.cached_tokens) == (0, 192)
        assert first.prefill_seconds == pytest.approx(200 / 1000)  # 20 x 50 tokens/s
        assert second.prefill_seconds == pytest.approx(8 / 1000)
        assert value(server, "vllm:prefix_cache_queries_total") == 400
        assert value(server, "vllm:prefix_cache_hits_total") == 192
        # another instance has its own cache: no affinity, no hit
        httpx.post(f"{other.url}/v1/completions", json=body, timeout=30)
        assert value(other, "vllm:prefix_cache_hits_total") == 0
        # another tenant's salt does not share the cached blocks
        salted = httpx.post(
            f"{server.url}/v1/completions", json={**body, "cache_salt": "tenant-b"}, timeout=30
        )
        assert salted.is_success and state.requests[-1].sequence is not None
        assert state.requests[-1].sequence.cached_tokens == 0


def test_unpaced_runs_count_the_cache_too(server: RunningServer, state: SimulatorState) -> None:
    messages = [{"role": "user", "content": LONG}]
    for _ in range(2):
        httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"messages": messages},
            headers={"Authorization": "Bearer " + (state.config.api_key or "")},
        )
    sequences = [r.sequence for r in state.requests[-2:]]
    assert [s.cached_tokens for s in sequences if s] == [0, 192]  # 203 tokens: 12 blocks
    assert [s.prefill_seconds for s in sequences if s] == [0, 0]


def test_decode_slows_with_the_batch() -> None:
    with sim(tokens_per_second=50, max_num_seqs=8, batch_slowdown=0.5) as server:
        state = state_of(server)
        body = {"prompt": "x", "max_tokens": 20, "ignore_eos": True}
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
        alone = state.requests[-1].sequence
        assert alone is not None and set(alone.batch_sizes) == {1}
        assert alone.step_seconds == [pytest.approx(1 / 50)] * 19
        with ExitStack() as stack:
            stack.enter_context(streams(server, 4, body))
            assert wait_for(lambda: state.completed == 5, timeout=30)
        batched = [r.sequence for r in state.requests[-4:] if r.sequence]
        pairs = {
            (b, s)
            for seq in batched
            for b, s in zip(seq.batch_sizes, seq.step_seconds, strict=True)
        }
        assert max(b for b, _ in pairs) > 1
        assert all(s == pytest.approx((1 + 0.5 * (b - 1)) / 50) for b, s in pairs)


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("kv", {"vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries", "vllm:prefix_cache_hits"}),
        (
            "gpu",
            {
                "vllm:gpu_cache_usage_perc",
                "vllm:gpu_prefix_cache_queries",
                "vllm:gpu_prefix_cache_hits",
            },
        ),
    ],
)
def test_metrics_have_vllms_names_types_and_labels(mode: str, names: set[str]) -> None:
    with sim(tokens_per_second=0, models=["m-a", "m-b"], cache_usage_metric=mode) as server:
        httpx.post(f"{server.url}/v1/completions", json={"prompt": "a b c", "max_tokens": 2})
        families = scrape(server)
        expected = {
            "vllm:num_requests_running": "gauge",
            "vllm:num_requests_waiting": "gauge",
            "vllm:prompt_tokens": "counter",
            "vllm:generation_tokens": "counter",
            "vllm:request_success": "counter",
            "vllm:time_to_first_token_seconds": "histogram",
            **{name: "gauge" if name.endswith("_perc") else "counter" for name in names},
        }
        assert {name: families[name][0] for name in expected} == expected
        other = {"gpu": "vllm:kv_cache_usage_perc", "kv": "vllm:gpu_cache_usage_perc"}[mode]
        assert other not in families
        for name in expected:
            for sample in families[name][1]:
                assert sample.labels["model_name"] == "m-a" and sample.labels["engine"] == "0"
        assert value(server, "vllm:prompt_tokens_total") == 3
        assert value(server, "vllm:generation_tokens_total") == 2
        assert value(server, "vllm:request_success_total", finished_reason="length") == 1
        assert value(server, "vllm:time_to_first_token_seconds_count") == 1


def test_both_cache_usage_names() -> None:
    with sim(tokens_per_second=0, cache_usage_metric="both") as server:
        families = scrape(server)
        assert {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"} <= set(families)


def test_the_waiting_queue_is_fifo() -> None:
    engine = Engine(SimulatorConfig(max_num_seqs=1))

    async def scenario() -> list[str]:
        admitted: list[str] = []
        sequences = {name: engine.sequence("m", [[1, 2, 3]], None) for name in "abc"}

        async def enter(name: str) -> None:
            await engine.admit(sequences[name], paced=True)
            admitted.append(name)

        tasks = [asyncio.create_task(enter(name)) for name in "abc"]
        await asyncio.sleep(0.01)
        assert admitted == ["a"] and len(engine.waiting) == 2
        engine.release(sequences["a"])
        await asyncio.sleep(0.01)
        assert admitted == ["a", "b"]
        tasks[2].cancel()  # a client leaving the queue
        await asyncio.gather(tasks[2], return_exceptions=True)
        assert not engine.waiting
        engine.release(sequences["b"])
        return admitted

    assert asyncio.run(scenario()) == ["a", "b"]
    assert not engine.running
