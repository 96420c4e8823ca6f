"""The backend pool: one pooled HTTP session, measured health, the model map, the choice."""

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
    last_error: str | None = None


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
        """Probe every backend's /health and /v1/models concurrently."""
        await asyncio.gather(*(self._check(backend) for backend in self.backends))

    async def refresh_models(self) -> None:
        """Re-read the model lists now (once at a time), e.g. for a model nobody listed."""
        if self._refresh_lock.locked():
            async with self._refresh_lock:
                return
        async with self._refresh_lock:
            await self.check_all()

    async def _check(self, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            async with self.session.get(
                f"{backend.base_url}/health", timeout=_PROBE_TIMEOUT
            ) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"/health answered {response.status}")
            backend.latency_ms = (time.perf_counter() - started) * 1000
            headers = {"Authorization": self.auth_header} if self.auth_header else {}
            async with self.session.get(
                f"{backend.base_url}/v1/models", headers=headers, timeout=_PROBE_TIMEOUT
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"/v1/models answered {response.status}")
            cards = [card for card in orjson.loads(body).get("data", []) if isinstance(card, dict)]
            backend.model_cards = cards
            backend.models = frozenset(str(card.get("id")) for card in cards)
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


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a failure."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    return str(exc) or type(exc).__name__
