"""The backend pool: one pooled HTTP session, measured health, the model map, the choice.

Health: a backend is probed on `/health` (vLLM answers 200, or 503 when its engine is
dead); a backend that has no such route (404, 405, 501: llama.cpp-style and many other
OpenAI-compatible servers) is probed on `/v1/models` instead, which every backend serves.
Its model list comes from `/v1/models` either way, with each model's context length
(`max_model_len`) when the backend states it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    from vllm_gateway.accounting.metrics import Metrics

log = logging.getLogger(__name__)

# vLLM closes idle keep-alive connections after 5 s; let ours go first.
KEEPALIVE_SECONDS = 4.0
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=3.0)
_NO_HEALTH_ROUTE = frozenset({404, 405, 501})
MODEL_REFRESH_INTERVAL = 5.0
"""Seconds between model-list refreshes asked for by requests naming an unknown model."""


@dataclass(slots=True)
class Backend:
    """One vLLM server."""

    name: str  # host:port, for labels and the admin pages; never holds credentials
    base_url: str  # without the trailing /v1
    healthy: bool = False
    checked: bool = False
    latency_ms: float | None = None
    model_cards: list[dict[str, Any]] = field(default_factory=list)
    models: frozenset[str] = frozenset()
    context_lengths: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    health_path: str | None = "/health"  # None: the backend has none; /v1/models is probed


def _base_url(url: str) -> str:
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _name(url: str) -> str:
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else url


class BackendPool:
    """Owns the upstream HTTP session and knows which backend serves which model."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.backends = [Backend(_name(url), _base_url(url)) for url in settings.backend_urls]
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        self.auth_header = f"Bearer {key}" if key else None
        # Built once: the same limits for every request.
        self.request_timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.gateway_connect_timeout,
            sock_read=settings.gateway_upstream_timeout,
        )
        self._round_robin = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = float("-inf")
        self._by_name = {backend.name: backend for backend in self.backends}
        self._context_lengths: dict[str, int] = {}
        self._longest_context: int | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one pooled client session of this worker."""
        assert self._session is not None, "BackendPool.start() was not awaited"
        return self._session

    async def start(self) -> None:
        """Open the session, look at every backend once, then keep looking."""
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        await self.check_all()
        self._health_task = asyncio.create_task(self._health_loop(), name="backend-health")

    async def close(self) -> None:
        """Stop health checks and close every upstream connection."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        if self._session is not None:
            await self._session.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gateway_health_interval)
            try:
                await self.check_all()
            except Exception:
                log.exception("backend health round failed")

    async def check_all(self) -> None:
        """Probe every backend's health and model list concurrently."""
        self._refreshed_at = time.monotonic()
        await asyncio.gather(*(self._check(backend) for backend in self.backends))
        self._index_models()

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

    async def _check(self, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            if backend.health_path is not None and not await self._healthy(backend):
                raise RuntimeError(f"{backend.health_path} did not answer 200")
            headers = {"Authorization": self.auth_header} if self.auth_header else {}
            async with self.session.get(
                f"{backend.base_url}/v1/models", headers=headers, timeout=_PROBE_TIMEOUT
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"/v1/models answered {response.status}")
            backend.latency_ms = (time.perf_counter() - started) * 1000
            cards = _model_cards(body)
            backend.model_cards = cards
            backend.models = frozenset(str(card.get("id")) for card in cards)
            backend.context_lengths = {
                str(card.get("id")): length
                for card in cards
                if isinstance(length := card.get("max_model_len"), int) and length > 0
            }
            if not backend.healthy:
                log.info("backend %s is up, serving %s", backend.name, sorted(backend.models))
            backend.healthy, backend.last_error = True, None
        except Exception as exc:  # every failure means the same: not usable now
            if backend.healthy or not backend.checked:
                log.warning("backend %s is down: %s", backend.name, _describe(exc))
            backend.healthy, backend.last_error = False, _describe(exc)
        finally:
            backend.checked = True
            self.metrics.set_backend_up(backend.name, backend.healthy)

    async def _healthy(self, backend: Backend) -> bool:
        """Probe /health; a backend without that route switches to /v1/models for good."""
        async with self.session.get(
            f"{backend.base_url}{backend.health_path}", timeout=_PROBE_TIMEOUT
        ) as response:
            await response.read()
            if response.status in _NO_HEALTH_ROUTE:
                log.info(
                    "backend %s has no %s (%d): probing /v1/models instead",
                    backend.name,
                    backend.health_path,
                    response.status,
                )
                backend.health_path = None
                return True
            return response.status == 200

    def context_length(self, model: str) -> int | None:
        """The model's context length; for no model or an unknown one, the longest known."""
        return self._context_lengths.get(model, self._longest_context)

    def _index_models(self) -> None:
        lengths: dict[str, int] = {}
        for backend in self.backends:
            for model, length in backend.context_lengths.items():
                lengths[model] = max(length, lengths.get(model, 0))
        self._context_lengths = lengths
        self._longest_context = max(lengths.values(), default=None)

    def by_name(self, name: str) -> Backend | None:
        """The backend called `name` (host:port), if it is in the pool."""
        return self._by_name.get(name)

    def candidates(self, model: str) -> list[Backend]:
        """Backends to try for `model`, healthy ones first, rotated for balance."""
        serving = [b for b in self.backends if not model or model in b.models]
        if not serving:
            return []
        start = next(self._round_robin) % len(serving)
        rotated = serving[start:] + serving[:start]
        return sorted(rotated, key=lambda backend: not backend.healthy)

    def knows_models(self) -> bool:
        """Whether any backend's model list is known."""
        return any(backend.models for backend in self.backends)

    def model_cards(self) -> list[dict[str, Any]]:
        """The models every reachable backend serves, each once, with server paths hidden."""
        seen: dict[str, dict[str, Any]] = {}
        for backend in self.backends:
            for card in backend.model_cards:
                model_id = str(card.get("id"))
                if model_id not in seen:
                    seen[model_id] = {**card, "root": model_id}
        return list(seen.values())

    def status(self) -> list[dict[str, Any]]:
        """Measured health of every backend, for the admin pages and /readyz."""
        return [
            {
                "name": backend.name,
                "healthy": backend.healthy,
                "models": sorted(backend.models),
                "latency_ms": None if backend.latency_ms is None else round(backend.latency_ms, 1),
                "error": backend.last_error,
            }
            for backend in self.backends
        ]


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
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    return str(exc) or type(exc).__name__
