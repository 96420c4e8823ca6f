"""The backend pool: the pooled connections (wire.py), the fleet, its health, load, the choice.

Health: a backend is probed on `/health` (vLLM answers 200, or 503 when its engine is
dead); a backend that has no such route (404, 405, 501: llama.cpp-style and many other
OpenAI-compatible servers) is probed on `/v1/models` instead, which every backend serves.
Its model list comes from `/v1/models` either way, with each model's context length
(`max_model_len`) when the backend states it; a backend with pinned models serves those.
Between probes, passive health (health.py) ejects backends that fail requests.

Load (load.py): every GATEWAY_METRICS_INTERVAL seconds each backend's /metrics is scraped.
The choice (choose): the routable backends serving the request's (alias-resolved) model,
ordered by the policy (policies.py); with one, no policy runs at all.

The fleet changes at run time (add, remove, drain, resume) in this worker; see DESIGN.md
on several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from vllm_gateway.routing import health
from vllm_gateway.routing.admission import FairQueue
from vllm_gateway.routing.aliases import Aliases
from vllm_gateway.routing.backend import Backend, BackendSpec, update_relative_costs
from vllm_gateway.routing.fleet_file import Fleet, load_fleet
from vllm_gateway.routing.fleet_metrics import FleetMetrics
from vllm_gateway.routing.load import signals_from
from vllm_gateway.routing.policies import RoutingPolicy, create_policy
from vllm_gateway.routing.prompt_key import prompt_key, session_key
from vllm_gateway.routing.wire import ConnectFailed, WireClient, WireError
from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    from vllm_gateway.accounting.metrics import Metrics

log = logging.getLogger(__name__)

# vLLM closes idle keep-alive connections after 5 s; let ours go first.
KEEPALIVE_SECONDS = 4.0
_PROBE_TIMEOUT = 3.0  # seconds, in all
_NO_HEALTH_ROUTE = frozenset({404, 405, 501})
MODEL_REFRESH_INTERVAL = 5.0
"""Seconds between model-list refreshes asked for by requests naming an unknown model."""

__all__ = ["Backend", "BackendPool", "BackendSpec", "Choice"]


class Choice:
    """What the pool chose for a request: the backend model name and the backends, in order."""

    __slots__ = ("backends", "model")

    def __init__(self, model: str, backends: list[Backend]) -> None:
        self.model = model
        self.backends = backends


def fleet_from_settings(settings: Settings) -> Fleet:
    """The fleet file's fleet, or one backend per VLLM_URL entry."""
    if settings.gateway_backends_file:
        return load_fleet(settings.gateway_backends_file)
    return Fleet([BackendSpec(url) for url in settings.backend_urls])


class BackendPool:
    """Owns the upstream connections and knows which backend serves which model."""

    def __init__(self, settings: Settings, metrics: Metrics, fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        fleet = fleet or fleet_from_settings(settings)
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        self.default_key = key
        self.backends = [Backend.from_spec(spec, key) for spec in fleet.backends]
        self.aliases = Aliases(fleet.aliases)
        self.policy: RoutingPolicy = create_policy(
            settings.gateway_routing, settings.gateway_affinity_margin
        )
        self.wire = WireClient(  # forwarded requests, probes, scrapes: one pool of connections
            KEEPALIVE_SECONDS, settings.gateway_connect_timeout, settings.gateway_upstream_timeout
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = float("-inf")
        self._by_name = {backend.name: backend for backend in self.backends}
        self._context_lengths: dict[str, int] = {}
        self._longest_context: int | None = None
        self._scrape_timeout = max(settings.gateway_metrics_interval, 0.5)
        self.admission = FairQueue(
            self.room,
            settings.gateway_queue_max,
            settings.gateway_queue_timeout,
            self.slots,
            self.has_room,
        )
        self.fleet_metrics = FleetMetrics(metrics, self.status)

    async def start(self) -> None:
        """Look at every backend once, then keep looking."""
        await self.check_all()
        await self.scrape_all()
        self._tasks = [
            asyncio.create_task(self._health_loop(), name="backend-health"),
            asyncio.create_task(self._scrape_loop(), name="backend-metrics"),
        ]

    async def close(self) -> None:
        """Stop health checks and scrapes, and close every upstream connection."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.wire.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gateway_health_interval)
            self.wire.prune()  # idle connections past their keep-alive, even with no traffic
            try:
                await self.check_all()
            except Exception:
                log.exception("backend health round failed")

    async def _scrape_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gateway_metrics_interval)
            try:
                await self.scrape_all()
            except Exception:
                log.exception("backend metrics round failed")

    async def check_all(self) -> None:
        """Probe every backend's health and model list concurrently."""
        self._refreshed_at = time.monotonic()
        await asyncio.gather(*(self._check(backend) for backend in list(self.backends)))
        self._index_models()
        self.capacity_changed()

    def uses_metrics(self) -> bool:
        """Whether load signals steer anything: a policy over several backends, or saturation."""
        several = len(self.backends) > 1 and self.policy.name != "round_robin"
        return several or self.settings.gateway_saturation_waiting is not None

    async def scrape_all(self) -> None:
        """Read every metered (or not yet known) backend's /metrics concurrently, if used."""
        if not self.uses_metrics():
            return
        await asyncio.gather(
            *(
                self._scrape(backend)
                for backend in list(self.backends)
                if backend.load.unmetered_reason is None
            )
        )
        self.capacity_changed()

    async def _scrape(self, backend: Backend) -> None:
        try:
            status, body = await self.wire.fetch(
                backend.base_url, "/metrics", self._auth(backend), self._scrape_timeout
            )
        except (WireError, TimeoutError):
            return  # the signals age; stale ones count as saturated
        if status in _NO_HEALTH_ROUTE and not backend.load.metered:
            backend.load.unmetered_reason = f"/metrics answered {status}"
            log.info("backend %s has no /metrics: routed on in-flight counts", backend.name)
            return
        if status != 200:
            return
        signals = signals_from(body.decode("utf-8", "replace"))
        if signals is not None:
            backend.load = signals
        elif not backend.load.metered:
            backend.load.unmetered_reason = "/metrics has no vLLM gauges"

    def capacity_changed(self) -> None:
        """Tell the admission queue that a backend may take requests again."""
        if self.admission.waiting:
            self.admission.dispatch()

    def observe(self, backend: Backend, seconds: float, tokens: int) -> None:
        """A request on `backend` generated `tokens` in `seconds`: learn its relative speed."""
        if len(self.backends) > 1:
            backend.observe(seconds, tokens)
            update_relative_costs(self.backends)

    def room(self, model: str) -> Backend | None:
        """The routable backend serving `model` to send one more request to now, if any.

        The least loaded one with room; but none when a faster backend at its concurrency cap
        would still be the cheaper choice (a clearly slower backend with room is not worth it:
        a slot of the faster one frees sooner than the slower one would answer). Backends of
        one speed are not compared so: a slot the gateway knows it has just freed is worth more
        than one to wait for, whatever the last scrape (up to a second old) still counts there.
        """
        now = time.monotonic()
        settings = self.settings
        stale, limit = settings.gateway_metrics_stale_after, settings.gateway_saturation_waiting
        free: list[Backend] = []
        capped: list[Backend] = []
        for backend in self.serving(model):
            if not backend.routable(now):
                continue
            if not backend.saturated(now, stale, limit):
                free.append(backend)
            elif (
                backend.max_concurrency is not None and backend.in_flight >= backend.max_concurrency
            ):
                capped.append(backend)
        if not free:
            return None
        best = min(free, key=Backend.score)
        faster = [backend for backend in capped if backend.relative_cost < best.relative_cost]
        if faster and best.score() > min(backend.score() for backend in faster):
            return None
        return best

    def slots(self, model: str) -> tuple[int, int] | None:
        """Free and total slots of the fastest routable backends for `model`, if all are capped.

        The fastest only: room() does not hand out a clearly slower backend's slot while a
        fast one's is worth waiting for. None when one of them has no concurrency cap (its
        room is vLLM's queue, not a number of slots).
        """
        now = time.monotonic()
        routable = [b for b in self.serving(model) if b.routable(now)]
        if not routable:
            return None
        fastest = min(b.relative_cost for b in routable)
        free = total = 0
        for backend in routable:
            if backend.relative_cost != fastest:
                continue
            if backend.max_concurrency is None:
                return None
            total += backend.max_concurrency
            free += max(backend.max_concurrency - backend.in_flight, 0)
        return free, total

    async def refresh_models(self) -> bool:
        """Re-read the model lists unless that was done in the last MODEL_REFRESH_INTERVAL.

        For a request naming a model nobody listed: a flood of such requests costs the
        backends one round of probes per interval, not two calls each. Returns whether a
        refresh ran (or was joined).
        """
        if self._refresh_lock.locked():
            async with self._refresh_lock:
                return True
        if time.monotonic() - self._refreshed_at < MODEL_REFRESH_INTERVAL:
            return False
        async with self._refresh_lock:
            await self.check_all()
        return True

    @staticmethod
    def _auth(backend: Backend) -> dict[str, str]:
        return {"Authorization": backend.auth_header} if backend.auth_header else {}

    async def _check(self, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            if backend.health_path is not None and not await self._healthy(backend):
                raise RuntimeError(f"{backend.health_path} did not answer 200")
            status, body = await self.wire.fetch(
                backend.base_url, "/v1/models", self._auth(backend), _PROBE_TIMEOUT
            )
            if status != 200:
                raise RuntimeError(f"/v1/models answered {status}")
            backend.latency_ms = (time.perf_counter() - started) * 1000
            _learn_models(backend, _model_cards(body))
            if not backend.healthy:
                log.info("backend %s is up, serving %s", backend.name, sorted(backend.models))
            backend.healthy, backend.last_error = True, None
            health.record_success(backend)
        except Exception as exc:  # every failure means the same: not usable now
            if backend.healthy or not backend.checked:
                log.warning("backend %s is down: %s", backend.name, _describe(exc))
            backend.healthy, backend.last_error = False, _describe(exc)
        finally:
            backend.checked = True
            self.metrics.set_backend_up(backend.name, backend.healthy)

    async def _healthy(self, backend: Backend) -> bool:
        """Probe /health; a backend without that route switches to /v1/models for good."""
        path = backend.health_path
        assert path is not None
        status, _ = await self.wire.fetch(backend.base_url, path, {}, _PROBE_TIMEOUT)
        if status in _NO_HEALTH_ROUTE:
            log.info(
                "backend %s has no %s (%d): probing /v1/models instead", backend.name, path, status
            )
            backend.health_path = None
            return True
        return status == 200

    def context_length(self, model: str) -> int | None:
        """The model's context length; for no model or an unknown one, the longest known."""
        return self._context_lengths.get(model, self._longest_context)

    def _index_models(self) -> None:
        lengths: dict[str, int] = {}
        for backend in self.backends:
            for model, length in backend.context_lengths.items():
                lengths[model] = max(length, lengths.get(model, 0))
        for alias, targets in self.aliases.table.items():
            known = [lengths[target] for target in targets if target in lengths]
            if known:
                lengths[alias] = min(known)  # whichever target serves it, the request fits
        self._context_lengths = lengths
        self._longest_context = max(lengths.values(), default=None)

    def by_name(self, name: str) -> Backend | None:
        """The backend called `name`, if it is in the pool."""
        return self._by_name.get(name)

    def serving(self, model: str) -> list[Backend]:
        """Backends of the pool that serve `model` (every one for no model), in pool order."""
        return [b for b in self.backends if not model or model in b.models]

    def choose(
        self, model: str, payload: dict[str, Any] | None, session_header: str | None
    ) -> Choice:
        """The backend model for `model` and the backends to try, in order.

        Routable backends first, in the policy's order; then those down or ejected (a last
        resort); never draining ones.
        """
        if model in self.aliases:
            model = self.aliases.target(model)
        serving = self.serving(model)
        if len(serving) == 1:  # the one-backend case: no policy, no key
            backend = serving[0]
            return Choice(model, [] if backend.draining else serving)
        now = time.monotonic()
        routable = [b for b in serving if b.routable(now)]
        if len(routable) > 1:
            prefix = self.settings.gateway_affinity_prefix_bytes
            routable = self.policy.order(
                routable, prompt_key(payload, prefix), session_key(payload, session_header)
            )
        resort = [b for b in serving if not b.draining and b not in routable]
        resort.sort(key=lambda b: (not b.healthy, b.ejected_until))
        return Choice(model, routable + resort)

    def has_room(self, backend: Backend) -> bool:
        """Whether `backend` may take one more request now (routable, not saturated)."""
        return backend.routable(time.monotonic()) and not self.saturated(backend)

    def saturated(self, backend: Backend) -> bool:
        """Whether `backend` has no room for another request now."""
        settings = self.settings
        return backend.saturated(
            time.monotonic(),
            settings.gateway_metrics_stale_after,
            settings.gateway_saturation_waiting,
        )

    def knows_models(self) -> bool:
        """Whether any backend's model list is known."""
        return any(backend.models for backend in self.backends)

    def model_cards(self) -> list[dict[str, Any]]:
        """The public models: aliases, and backend names not behind one; server paths hidden."""
        seen: dict[str, dict[str, Any]] = {}
        for backend in self.backends:
            for card in backend.model_cards:
                model_id = str(card.get("id"))
                if model_id not in seen:
                    seen[model_id] = {**card, "root": model_id}
        public = {m: card for m, card in seen.items() if m not in self.aliases.hidden}
        for alias, targets in self.aliases.table.items():
            found = next((seen[t] for t in targets if t in seen), None)
            if found is not None:
                public[alias] = {**found, "id": alias, "root": alias}
        return list(public.values())

    # Operations: the fleet changes without a restart.

    async def add(self, spec: BackendSpec) -> Backend:
        """Add a backend (probed once before it takes requests); ValueError if the name is taken."""
        backend = Backend.from_spec(spec, self.default_key)
        if backend.name in self._by_name:
            raise ValueError(f"a backend is already called {backend.name!r}")
        self._by_name[backend.name] = backend
        self.backends = [*self.backends, backend]
        await self._check(backend)
        await self._scrape(backend)
        self._index_models()
        self.capacity_changed()
        log.info("backend %s added", backend.name)
        return backend

    def remove(self, name: str) -> Backend | None:
        """Take a backend out of the pool; requests in flight on it finish."""
        backend = self._by_name.pop(name, None)
        if backend is not None:
            backend.removed = True
            self.backends = [b for b in self.backends if b is not backend]
            self._index_models()
            log.info("backend %s removed", name)
        return backend

    def set_draining(self, name: str, draining: bool) -> Backend | None:
        """Drain (no new requests; in-flight ones finish) or resume a backend."""
        backend = self._by_name.get(name)
        if backend is not None and backend.draining != draining:
            backend.draining = draining
            log.info("backend %s %s", name, "draining" if draining else "resumed")
            if not draining:
                self.capacity_changed()
        return backend

    def status(self) -> list[dict[str, Any]]:
        """Measured health and load of every backend, for the admin pages and /readyz."""
        now = time.monotonic()
        stale_after = self.settings.gateway_metrics_stale_after
        rows = []
        for backend in self.backends:
            load = backend.load
            stale = load.metered and now - load.scraped_at > stale_after
            rows.append(
                {
                    "name": backend.name,
                    "healthy": backend.healthy,
                    "state": backend.state(now),
                    "models": sorted(backend.models),
                    "weight": backend.weight,
                    "labels": backend.labels,
                    "max_concurrency": backend.max_concurrency,
                    "in_flight": backend.in_flight,
                    "served": backend.served,
                    "latency_ms": _round(backend.latency_ms),
                    "answer_latency_ms": _round(backend.latency_ewma_ms),
                    "metered": load.metered,
                    "stale": stale,
                    "running": load.running,
                    "waiting": load.waiting,
                    "kv_usage": round(load.kv_usage, 4),
                    "prefix_hit_rate": (
                        round(load.prefix_hits / load.prefix_queries, 4)
                        if load.prefix_queries
                        else None
                    ),
                    "error": backend.last_error,
                }
            )
        return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _learn_models(backend: Backend, cards: list[dict[str, Any]]) -> None:
    pinned = backend.pinned_models
    if pinned is not None:
        listed = {str(card["id"]) for card in cards}
        cards = [card for card in cards if card["id"] in pinned]
        cards += [{"id": m, "object": "model", "owned_by": "vllm"} for m in pinned - listed]
    backend.model_cards = cards
    backend.models = pinned if pinned is not None else frozenset(str(c["id"]) for c in cards)
    backend.context_lengths = {
        str(card.get("id")): length
        for card in cards
        if isinstance(length := card.get("max_model_len"), int) and length > 0
    }


def _model_cards(body: bytes) -> list[dict[str, Any]]:
    """The model objects of a /v1/models answer; a body of another shape lists none."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RuntimeError("/v1/models answered something that is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise RuntimeError("/v1/models answered JSON without a `data` list")
    return [card for card in data if isinstance(card, dict) and isinstance(card.get("id"), str)]


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a failure."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectFailed):
        return "connection refused"
    return str(exc) or type(exc).__name__
