"""The admission queue's order: keys take turns, priorities share by weight, bounds hold."""

from __future__ import annotations

import asyncio

import pytest

from vllm_gateway.routing.admission import FairQueue, QueueRefused
from vllm_gateway.routing.backend import Backend


async def _served_order(arrivals: list[tuple[str, str]]) -> list[str]:
    """Queue every arrival, then free one slot at a time; the keys in the order served."""
    backend = Backend("b", "http://b")
    slots: list[Backend] = []
    queue = FairQueue(lambda model: slots.pop() if slots else None, max_waiting=100, timeout=5)
    order: list[str] = []

    async def request(key: str, priority: str) -> None:
        await queue.wait("m", key, priority)
        order.append(key)

    tasks = [asyncio.create_task(request(k, p)) for k, p in arrivals]
    await asyncio.sleep(0)
    for remaining in range(len(arrivals), 0, -1):
        assert queue.waiting == remaining
        slots.append(backend)
        queue.dispatch()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert backend.in_flight == len(arrivals)  # each dispatched request holds its slot
    return order


async def test_keys_take_turns() -> None:
    arrivals = [("noisy", "normal")] * 6 + [("quiet", "normal")] * 2
    order = await _served_order(arrivals)
    assert order[:4] == ["noisy", "quiet", "noisy", "quiet"]


async def test_high_priority_gets_twice_normal_and_four_times_low() -> None:
    arrivals = [("h", "high")] * 8 + [("n", "normal")] * 8 + [("l", "low")] * 8
    order = (await _served_order(arrivals))[:14]
    assert order.count("h") == 8 and order.count("n") == 4 and order.count("l") == 2


async def test_full_queue_and_timeout_refuse() -> None:
    queue = FairQueue(lambda model: None, max_waiting=1, timeout=0.05)
    waiting = asyncio.create_task(queue.wait("m", "k", "normal"))
    await asyncio.sleep(0)
    with pytest.raises(QueueRefused) as full:
        await queue.wait("m", "k", "normal")
    assert full.value.reason == "queue_full"
    with pytest.raises(QueueRefused) as late:
        await waiting
    assert late.value.reason == "queue_timeout" and late.value.waited >= 0.05
    assert queue.waiting == 0


async def test_the_key_holding_fewest_slots_goes_first() -> None:
    backend = Backend("b", "http://b")
    slots: list[Backend] = []
    queue = FairQueue(lambda model: slots.pop() if slots else None, max_waiting=100, timeout=5)
    for _ in range(6):
        queue.hold("m", "noisy")  # the noisy key holds six slots already
    order: list[str] = []

    async def request(key: str) -> None:
        await queue.wait("m", key, "normal")
        order.append(key)

    tasks = [asyncio.create_task(request(k)) for k in ["noisy"] * 4 + ["quiet"] * 2]
    await asyncio.sleep(0)
    for _ in range(6):
        slots.append(backend)
        queue.dispatch()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["quiet", "quiet", "noisy", "noisy", "noisy", "noisy"]
    assert queue.holding("m", "quiet") == 2 and queue.holding("m", "noisy") == 10
    queue.release("m", "quiet")
    queue.release("m", "quiet")
    assert queue.holding("m", "quiet") == 0


async def test_a_key_at_its_share_leaves_a_slot_free_for_each_lighter_key() -> None:
    backend = Backend("b", "http://b", in_flight=4)  # 8 slots: noisy holds three, quiet one
    queue = FairQueue(
        lambda model: backend if backend.in_flight < 8 else None,
        max_waiting=100,
        timeout=5,
        slots=lambda model: (8 - backend.in_flight, 8),
    )
    for key in ("noisy", "noisy", "noisy", "quiet"):
        queue.hold("m", key)
    queue.hold("other model", "elsewhere")  # a key busy with another model claims no slot here
    noisy = [asyncio.create_task(queue.wait("m", "noisy", "normal")) for _ in range(4)]
    for _ in range(5):
        await asyncio.sleep(0)
    # The share is 8 slots / 2 keys: the noisy key takes three more (it may go past its
    # share), but not the last free slot, which the quiet key (below its share) may claim.
    assert sum(task.done() for task in noisy) == 3 and backend.in_flight == 7
    quiet = asyncio.create_task(queue.wait("m", "quiet", "normal"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert quiet.done() and backend.in_flight == 8  # it started at once, in the kept slot
    assert queue.waiting == 1  # the noisy key's fourth waits for a slot to free
    noisy[3].cancel()
    await asyncio.gather(*noisy, return_exceptions=True)
