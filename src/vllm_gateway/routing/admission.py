"""Fair admission: requests wait in the gateway while every backend for their model is saturated.

Instead of piling into vLLM's first-come queue, where one noisy key delays everyone behind
it, a request whose backends are all saturated (backend.saturated: a concurrency cap
reached, vLLM's waiting queue past GATEWAY_SATURATION_WAITING, or metrics gone stale) waits
here, in a queue per model, bounded in length (GATEWAY_QUEUE_MAX) and in time
(GATEWAY_QUEUE_TIMEOUT): past either it gets a 503 with Retry-After.

Dispatch is fair across keys and weighted across priorities: each priority class (high,
normal, low: weights 4, 2, 1) is served by stride scheduling (the class with the least
service per weight goes next, a class that was idle starts level with the others), and
within a class the key with the fewest requests holding a backend slot goes next (ties take
turns, one request each): max-min fairness over the slots, so a quiet key's request takes the
next slot that frees even when a noisy key has many more waiting and holds most slots (plain
turns would put it behind one noisy request per turn, and behind its own key's other one).
Every request that holds a slot is counted (`hold`, `release`), queued or not.

Whenever a backend may have room (a request ended, a scrape, a resume, a new waiter) the queue
hands the next waiters a backend with room (the one the routing policy chose first for the
waiter, its prefix's or its session's, when that one has room too), counting them in its
in-flight requests at once so one free slot is never promised twice. While anyone waits for a
model, a new request for it waits too (route.py) instead of taking a slot that frees ahead of
them: a noisy key's clients, which send again the moment an answer ends, would otherwise take
every slot first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vllm_gateway.routing.backend import Backend

PRIORITY_WEIGHTS = {"high": 4.0, "normal": 2.0, "low": 1.0}


class QueueRefused(Exception):
    """The request cannot wait (the queue is full) or waited too long."""

    def __init__(self, reason: str, waited: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.waited = waited


@dataclass(eq=False)
class _Waiter:
    key_id: str
    future: asyncio.Future[Backend]
    preferred: Backend | None = None  # the policy's first choice (its prefix or session)


@dataclass
class _PriorityClass:
    weight: float
    passed: float = 0.0  # service received / weight
    keys: OrderedDict[str, deque[_Waiter]] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return sum(len(waiters) for waiters in self.keys.values())


class _ModelQueue:
    """The waiters of one model."""

    def __init__(self) -> None:
        self.classes = {name: _PriorityClass(weight) for name, weight in PRIORITY_WEIGHTS.items()}
        self.size = 0

    def push(self, waiter: _Waiter, priority: str) -> None:
        klass = self.classes.get(priority, self.classes["normal"])
        if not klass.keys:
            # An idle class starts level with the busy ones: no credit saved up while idle.
            busy = [c.passed for c in self.classes.values() if c.keys]
            klass.passed = max(klass.passed, min(busy, default=0.0))
        klass.keys.setdefault(waiter.key_id, deque()).append(waiter)
        self.size += 1

    def pop(self, held: dict[str, int], may_take: Callable[[str], bool]) -> _Waiter | None:
        """The next waiter: of the key holding the fewest slots (`held`), unless it may not."""
        busy = [c for c in self.classes.values() if c.keys]
        if not busy:
            return None
        klass = min(busy, key=lambda c: c.passed)
        key_id = min(klass.keys, key=lambda key: held.get(key, 0))  # first of the fewest
        if not may_take(key_id):
            return None  # the fewest already hold their share: the slot stays in reserve
        waiters = klass.keys[key_id]
        waiter = waiters.popleft()
        if waiters:
            klass.keys.move_to_end(key_id)  # the next key's turn
        else:
            del klass.keys[key_id]
        klass.passed += 1.0 / klass.weight
        self.size -= 1
        return waiter

    def keys_waiting(self) -> set[str]:
        """The keys with a request waiting."""
        return {key for klass in self.classes.values() for key in klass.keys}

    def discard(self, waiter: _Waiter) -> None:
        for klass in self.classes.values():
            waiters = klass.keys.get(waiter.key_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del klass.keys[waiter.key_id]
                self.size -= 1
                return


class FairQueue:
    """The admission queues of one worker, one per model."""

    def __init__(
        self,
        room: Callable[[str], Backend | None],
        max_waiting: int,
        timeout: float,
        slots: Callable[[str], tuple[int, int] | None] | None = None,
        has_room: Callable[[Backend], bool] | None = None,
    ) -> None:
        self._room = room  # a routable backend for the model with room now, if any
        self._slots = slots  # the model's free and total slots, when they are counted
        self._has_room = has_room  # whether this routable backend may take one more now
        self.max_waiting = max_waiting
        self.timeout = timeout
        self._queues: dict[str, _ModelQueue] = {}
        # model -> key id -> the key's requests for the model that hold a backend slot
        self._holding: dict[str, dict[str, int]] = {}
        self.waiting = 0

    def hold(self, model: str, key_id: str) -> None:
        """A request of `key_id` for `model` holds a backend slot (the queue counts those it
        hands out)."""
        held = self._holding.setdefault(model, {})
        held[key_id] = held.get(key_id, 0) + 1

    def release(self, model: str, key_id: str) -> None:
        """A request of `key_id` for `model` gave its slot back."""
        held = self._holding.get(model)
        if held is None:
            return
        left = held.get(key_id, 0) - 1
        if left > 0:
            held[key_id] = left
        else:
            held.pop(key_id, None)
            if not held:
                del self._holding[model]

    def holding(self, model: str, key_id: str) -> int:
        """How many requests of `key_id` for `model` hold a backend slot."""
        held = self._holding.get(model)
        return held.get(key_id, 0) if held is not None else 0

    def waiting_for(self, model: str) -> int:
        """Requests waiting for `model`."""
        queue = self._queues.get(model)
        return queue.size if queue is not None else 0

    async def wait(
        self, model: str, key_id: str, priority: str, preferred: Backend | None = None
    ) -> tuple[Backend, float]:
        """Wait for a backend with room, `preferred` when it has room as the turn comes; it
        counts the request in flight already.

        Returns it and the seconds waited; QueueRefused when full or past the timeout.
        """
        started = time.monotonic()
        if self.waiting >= self.max_waiting:
            raise QueueRefused("queue_full", 0.0)
        queue = self._queues.setdefault(model, _ModelQueue())
        waiter = _Waiter(key_id, asyncio.get_running_loop().create_future(), preferred)
        queue.push(waiter, priority)
        self.waiting += 1
        self.dispatch()  # a slot may be free already: the queue hands it out in turn
        try:
            backend = await asyncio.wait_for(asyncio.shield(waiter.future), self.timeout)
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().in_flight -= 1  # handed a slot it will not use:
                self.release(model, key_id)
                self.dispatch()  # the next waiter's
            else:
                queue.discard(waiter)
                self.waiting -= 1
                waiter.future.cancel()
            if isinstance(exc, TimeoutError):
                raise QueueRefused("queue_timeout", time.monotonic() - started) from None
            raise
        return backend, time.monotonic() - started

    def _may_take(self, model: str, queue: _ModelQueue) -> Callable[[str], bool]:
        """Whether a key may take a free slot now, or must leave it for lighter keys.

        A key below its share (the slots over the keys holding or waiting) always may. One at
        or above it may not take the slots the other keys below their share could claim next:
        one for each of them is kept free, so their next request starts at once instead of
        waiting for a slot to free (without preemption, a key holding every slot would make
        them wait for its requests to end). With one key alone nothing is kept back.
        """
        counted = self._slots(model) if self._slots is not None else None
        if counted is None:
            return lambda key_id: True
        free, total = counted
        held = self._holding.get(model, {})
        active = set(held) | queue.keys_waiting()
        share = total / max(len(active), 1)
        below = {key for key in active if held.get(key, 0) < share}

        def may_take(key_id: str) -> bool:
            if key_id in below:
                return True
            return free - 1 >= len(below)

        return may_take

    def dispatch(self) -> None:
        """Hand backends with room to the next waiters, fairly."""
        if not self.waiting:
            return
        for model, queue in list(self._queues.items()):
            while queue.size:
                backend = self._room(model)
                if backend is None:
                    break
                held = self._holding.get(model, {})
                waiter = queue.pop(held, self._may_take(model, queue))
                if waiter is None:
                    break
                self.waiting -= 1
                preferred = waiter.preferred
                if (
                    preferred is not None
                    and preferred is not backend
                    and self._has_room is not None
                    and self._has_room(preferred)
                ):
                    backend = preferred  # where its prefix is cached, when it has room too
                if not waiter.future.done():
                    backend.in_flight += 1  # the waiter's lease, from now
                    self.hold(model, waiter.key_id)
                    waiter.future.set_result(backend)
            if not queue.size:
                del self._queues[model]
