"""Routing policies: the order in which to try the routable backends for one request.

- `round_robin`: smooth weighted round robin (nginx's), blind to load and prompts.
- `least_loaded`: power of two choices: two backends drawn at random (by weight), the one
  with the lower score first (backend.score: the requests ahead, in flight or running,
  waiting, KV usage, plus this one, times the backend's seconds per token relative to the
  fastest's, per weight).
- `cache_aware` (the default): the prompt's leading blocks (prompt_key.py) pick a backend
  by weighted rendezvous hashing (weight: the
  configured one, divided by the backend's measured slowness rounded to a power of two), so
  the same key meets the same backend on every gateway instance and a backend that leaves
  moves only its own keys; unless that backend's score exceeds both twice the least loaded
  one's and the least loaded one's plus the margin, then the next backend in the key's own
  rendezvous order that does not goes first (always the same second choice for a key).
A session (the `user` field or `x-session-id`, under `least_loaded` and `cache_aware`;
`round_robin` ignores it) stays on its backend while that is routable, whatever its load or
measured speed: rendezvous by the configured weights only, so neither a busy moment nor a
noisy speed estimate moves a conversation (the spec: "while it is healthy").
After the first choice, the others follow from the least loaded up (for retries).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Protocol

from vllm_gateway.routing.backend import Backend

POLICIES = ("round_robin", "least_loaded", "cache_aware")
AFFINITY_LOAD_FACTOR = 2.0


class RoutingPolicy(Protocol):
    """Orders routable backends for a request."""

    name: str

    def order(
        self, backends: Sequence[Backend], prompt: bytes | None, session: bytes | None
    ) -> list[Backend]:
        """`backends` (at least two), the one to try first at the front."""


def _by_load(backends: Sequence[Backend], first: Backend) -> list[Backend]:
    rest = sorted((b for b in backends if b is not first), key=Backend.score)
    return [first, *rest]


def hash_weight(backend: Backend) -> float:
    """A backend's share of the keys: its weight over its relative cost (a power of two; 1
    unless it is clearly slower, see backend.update_relative_costs)."""
    return backend.weight / backend.relative_cost


def _rendezvous_score(backend: Backend, key: bytes, weight: float | None = None) -> float:
    digest = hashlib.blake2b(key + backend.name.encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)  # in (0, 1)
    return -(hash_weight(backend) if weight is None else weight) / math.log(unit)


def session_backend(backends: Sequence[Backend], session: bytes) -> Backend:
    """A session's backend among the routable ones: by the configured weights alone."""
    return max(backends, key=lambda backend: _rendezvous_score(backend, session, backend.weight))


def rendezvous(backends: Sequence[Backend], key: bytes) -> list[Backend]:
    """Weighted rendezvous (highest random weight) hashing: the key's backends, its own first.

    The rest follow in the key's own order, so when its backend is overloaded the key moves
    to the same second one every time (and from any gateway instance): its prefix is then
    cached on two backends, not on whichever happened to be the least loaded each time.
    """
    return sorted(backends, key=lambda backend: _rendezvous_score(backend, key), reverse=True)


class RoundRobin:
    """Smooth weighted round robin."""

    name = "round_robin"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def order(
        self, backends: Sequence[Backend], prompt: bytes | None, session: bytes | None
    ) -> list[Backend]:
        current, total = self._current, 0.0
        best: Backend | None = None
        for backend in backends:
            value = current.get(backend.name, 0.0) + backend.weight
            current[backend.name] = value
            total += backend.weight
            if best is None or value > current[best.name]:
                best = backend
        assert best is not None
        current[best.name] -= total
        start = backends.index(best)
        return [*backends[start:], *backends[:start]]


class LeastLoaded:
    """Power of two choices on the load score."""

    name = "least_loaded"

    def __init__(self, margin: float, rng: random.Random | None = None) -> None:
        self.margin = margin
        self._random = rng or random.Random()

    def pick(self, backends: Sequence[Backend]) -> Backend:
        """The lower-scored of two backends drawn by weight."""
        first, second = self._two(backends)
        return first if first.score() <= second.score() else second

    def _two(self, backends: Sequence[Backend]) -> tuple[Backend, Backend]:
        weights = [backend.weight for backend in backends]
        first = self._random.choices(backends, weights)[0]
        others = [backend for backend in backends if backend is not first]
        second = self._random.choices(others, [b.weight for b in others])[0]
        return first, second

    def order(
        self, backends: Sequence[Backend], prompt: bytes | None, session: bytes | None
    ) -> list[Backend]:
        if session is not None:
            return _by_load(backends, session_backend(backends, session))
        return _by_load(backends, self.pick(backends))

    def affine(self, backends: Sequence[Backend], key: bytes) -> Backend:
        """The key's backend, unless it is overloaded next to the least loaded one; then the
        next in the key's rendezvous order that is not.

        Overloaded: its score exceeds both twice the lightest's and the lightest's plus the
        margin. A relative bound keeps affinity through the ordinary imbalance of hashing at
        any load (a miss costs a whole prefill), an absolute one through small counts.
        """
        light = min(backend.score() for backend in backends)
        bound = max(light * AFFINITY_LOAD_FACTOR, light + self.margin)
        ranked = rendezvous(backends, key)
        for backend in ranked:
            if backend.score() <= bound:
                return backend
        return ranked[0]  # unreachable: the lightest is within the bound


class CacheAware(LeastLoaded):
    """Prefix affinity, bounded by load (and sessions, as under least_loaded)."""

    name = "cache_aware"

    def order(
        self, backends: Sequence[Backend], prompt: bytes | None, session: bytes | None
    ) -> list[Backend]:
        if session is not None:
            return _by_load(backends, session_backend(backends, session))
        if prompt is None:
            return _by_load(backends, self.pick(backends))
        return _by_load(backends, self.affine(backends, prompt))


def create_policy(name: str, margin: float) -> RoutingPolicy:
    """The policy GATEWAY_ROUTING names."""
    if name == "round_robin":
        return RoundRobin()
    if name == "least_loaded":
        return LeastLoaded(margin)
    if name == "cache_aware":
        return CacheAware(margin)
    raise ValueError(f"unknown routing policy {name!r}")
