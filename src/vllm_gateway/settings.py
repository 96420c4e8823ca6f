"""Gateway configuration, read from the environment and an optional `.env` file."""

from __future__ import annotations

import os
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vllm_gateway.access.role_rules import parse_rules
from vllm_gateway.resp.address import parse_url


class Settings(BaseSettings):
    """Every setting has an environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    vllm_url: str = Field(
        "http://localhost:8000/v1",
        description="vLLM backend base URL(s) ending in /v1; comma-separated for several",
    )
    vllm_api_key: SecretStr | None = Field(None, description="the backend's own API key")
    database_path: str = Field("./gateway.db", description="SQLite file (the default store)")
    database_url: str | None = Field(None, description="SQLAlchemy URL; overrides DATABASE_PATH")
    redis_url: str | None = Field(None, description="Redis for shared limits and cache events")
    redis_sentinels: str | None = Field(
        None, description="Redis Sentinel addresses host:port,...; the primary is asked of them"
    )
    redis_sentinel_master: str = Field(
        "mymaster", description="the name the sentinels monitor the primary under"
    )

    gateway_host: str = "0.0.0.0"  # noqa: S104 - a gateway is meant to be reached
    gateway_port: int = Field(8001, ge=1, le=65535)
    gateway_workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        1, description="uvicorn worker processes, or auto: one per core (needs Redis)"
    )
    gateway_admin_key: SecretStr | None = Field(None, description="admin secret")
    gateway_metrics_token: SecretStr | None = Field(
        None, description="bearer token for /metrics besides the admin key"
    )

    gateway_default_daily_requests: int | None = Field(
        1000, ge=1, description="daily request limit given to new keys (empty: unlimited)"
    )
    gateway_max_body_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="largest request body accepted"
    )
    gateway_max_header_bytes: int = Field(
        32 * 1024, ge=4096, le=1024 * 1024, description="largest request head (431 above)"
    )
    gateway_client_header_timeout: float = Field(
        10.0, gt=0, description="seconds a client may take to send a request's headers (408)"
    )
    gateway_client_body_timeout: float = Field(
        30.0, gt=0, description="seconds a request body may stop arriving (408)"
    )
    gateway_connect_timeout: float = Field(5.0, gt=0, description="seconds to reach a backend")
    gateway_upstream_timeout: float = Field(
        600.0, gt=0, description="seconds a backend may stay silent before 504"
    )
    gateway_first_token_timeout: float = Field(
        300.0, gt=0, description="seconds a stream's first chunk may take (prefill, queueing)"
    )
    gateway_stream_idle_timeout: float = Field(
        60.0, gt=0, description="seconds a stream may go without a chunk before it is cut"
    )
    gateway_key_cache_ttl: float = Field(
        10.0, ge=0, description="seconds a verified key stays cached in a worker"
    )
    gateway_key_touch_interval: float = Field(
        5.0, gt=0, description="seconds between batched writes of the keys' last-used times"
    )
    gateway_health_interval: float = Field(
        10.0, gt=0, description="seconds between backend health checks"
    )
    gateway_usage_retention_days: int = Field(
        90, ge=1, description="usage events older than this are pruned (daily rollups stay)"
    )
    gateway_usage_flush_interval: float = Field(
        0.5, gt=0, description="seconds between batched usage writes"
    )
    gateway_usage_shutdown_timeout: float = Field(
        20.0, gt=0, description="seconds shutdown keeps retrying unwritten usage events"
    )
    gateway_shutdown_grace: float = Field(
        30.0, ge=0, description="seconds requests in flight get to finish on shutdown"
    )
    gateway_journal_dir: str = Field(
        "./journal", description="directory of the usage journal (events not yet in the database)"
    )
    gateway_journal_max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="disk the usage journal may use at most"
    )
    gateway_session_ttl: float = Field(
        8 * 3600.0, gt=0, description="seconds an admin login session lasts"
    )
    gateway_access_log: Literal["json", "text", "off"] = Field(
        "json", description="one line per request on standard output: json, text or off"
    )
    gateway_log_level: str = Field("info", description="debug, info, warning or error")
    gateway_redis_timeout: float = Field(
        1.0, gt=0, description="seconds a Redis call may take before Redis counts as away"
    )
    gateway_limit_lease_seconds: float = Field(
        30.0, ge=3, description="lease of a concurrency slot, renewed while its request runs"
    )
    gateway_limits_on_redis_failure: Literal["closed", "open", "local"] = Field(
        "closed",
        description="while Redis is away: closed (503), open (no limits) or local "
        "(each worker's own counters)",
    )
    gateway_media_urls: Literal["data-only", "public", "any"] = Field(
        "public",
        description="which URLs chat content parts may make the backend fetch: data-only, "
        "public (no loopback, private, link-local or metadata hosts) or any",
    )
    gateway_media_domains: str | None = Field(
        None,
        description="comma-separated hosts media URLs are limited to (example.com, *.cdn.com)",
    )
    gateway_cache_isolation: Literal["none", "key"] = Field(
        "none",
        description="none, or key: a per-key vLLM cache_salt so tenants never share cached "
        "prompt prefixes",
    )
    gateway_trusted_proxies: str | None = Field(
        None,
        description="addresses or CIDR ranges (comma-separated) of proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto headers are believed",
    )
    # --- organisation: budget alerts and single sign-on ---
    gateway_alert_webhook: str | None = Field(
        None, description="URL that budget alerts (80% and 100%) are POSTed to"
    )
    gateway_alert_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key of the alerts' X-Gateway-Signature header "
        "(default: one generated and stored in the database)",
    )
    gateway_oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer URL for admin single sign-on"
    )
    gateway_oidc_client_id: str | None = Field(None, description="OIDC client id")
    gateway_oidc_client_secret: SecretStr | None = Field(None, description="OIDC client secret")
    gateway_oidc_roles: str | None = Field(
        None,
        description="who gets which role: comma-separated group:NAME=ROLE or "
        "domain:example.com=ROLE rules, the first match wins (none: no access)",
    )

    # Fleet routing (routing/): the backends, the policy, load signals, health, admission.
    gateway_backends_file: str | None = Field(
        None, description="TOML file describing the fleet (backends, keys, weights, aliases)"
    )
    gateway_routing: Literal["round_robin", "least_loaded", "cache_aware"] = Field(
        "cache_aware",
        description="round_robin, least_loaded (power of two choices on load) or cache_aware "
        "(prompt-prefix or session affinity, bounded by load)",
    )
    gateway_affinity_margin: float = Field(
        8.0, ge=0, description="load score by which an affine backend may exceed the lightest"
    )
    gateway_affinity_prefix_bytes: int = Field(
        2048, ge=256, description="leading prompt bytes hashed for prefix affinity"
    )
    gateway_metrics_interval: float = Field(
        1.0, gt=0, description="seconds between scrapes of each backend's /metrics"
    )
    gateway_metrics_stale_after: float = Field(
        5.0, gt=0, description="seconds after which a backend's metrics count as saturated"
    )
    gateway_saturation_waiting: int | None = Field(
        None, ge=0, description="vLLM's waiting requests above which a backend is saturated"
    )
    gateway_eject_failures: int = Field(
        3, ge=1, description="consecutive failed requests that eject a backend"
    )
    gateway_eject_seconds: float = Field(
        2.0, gt=0, description="first ejection's length; doubles per ejection in a row"
    )
    gateway_retry_attempts: int = Field(
        3, ge=1, le=10, description="backends tried at most before the answer starts"
    )
    gateway_retry_budget: float = Field(
        10.0, gt=0, description="seconds retries may take before the answer starts"
    )
    gateway_fleet_refresh: float = Field(
        10.0, gt=0, description="seconds between reads of the stored run-time fleet changes"
    )
    gateway_queue_max: int = Field(
        1000, ge=0, description="requests waiting for a saturated fleet at most (then 503)"
    )
    gateway_queue_timeout: float = Field(
        30.0, ge=0, description="seconds a request may wait for a saturated fleet (then 503)"
    )

    # OpenTelemetry traces (tracing/): the standard variables; nothing is traced, and the SDK
    # is not even imported, unless an OTLP endpoint is set.
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP base URL (traces go to its /v1/traces)"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL, used as it is (overrides the base URL)"
    )
    otel_exporter_otlp_headers: SecretStr | None = Field(
        None, description="headers of every export, key=value,... (e.g. the collector's token)"
    )
    otel_exporter_otlp_traces_headers: SecretStr | None = Field(
        None, description="headers of trace exports (override OTEL_EXPORTER_OTLP_HEADERS)"
    )
    otel_service_name: str = Field("vllm-gateway", description="the traces' service.name")
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field("parentbased_always_on", description="which requests are traced")
    otel_traces_sampler_arg: float = Field(
        1.0, ge=0, le=1, description="the ratio of the traceidratio samplers"
    )
    otel_sdk_disabled: bool = Field(False, description="true: no traces, whatever is set")

    @field_validator("vllm_url")
    @classmethod
    def _urls_are_http(cls, value: str) -> str:
        for url in backend_urls(value):
            problem = backend_url_problem(url)
            if problem is not None:
                raise ValueError(problem)
        if not backend_urls(value):
            raise ValueError("VLLM_URL names no backend")
        return value

    @field_validator("gateway_oidc_roles")
    @classmethod
    def _readable_role_rules(cls, value: str | None) -> str | None:
        parse_rules(value)  # a ValueError names the rule it cannot read
        return value

    @field_validator("gateway_default_daily_requests", mode="before")
    @classmethod
    def _empty_default_is_unlimited(cls, value: object) -> object:
        # `GATEWAY_DEFAULT_DAILY_REQUESTS=` (empty) or `=unlimited` gives new keys no limit.
        if isinstance(value, str) and value.strip().lower() in ("", "unlimited", "none"):
            return None
        return value

    @field_validator("gateway_log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return level

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("DATABASE_URL must be sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _usable_redis_url(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        parse_url(value.strip())  # raises ValueError naming what the client cannot follow
        return value.strip()

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        parts = [part.strip() for part in value.split(",") if part.strip()]
        for part in parts:
            _host_and_port(part)  # raises ValueError naming the bad one
        return ",".join(parts)

    @model_validator(mode="after")
    def _several_workers_need_redis(self) -> Settings:
        if self.gateway_workers == "auto" and not self.uses_redis:
            raise ValueError(
                "GATEWAY_WORKERS=auto needs REDIS_URL (or REDIS_SENTINELS): the workers share "
                "their limits through it, whatever the number of cores"
            )
        if self.worker_count > 1 and not self.uses_redis:
            raise ValueError(
                "GATEWAY_WORKERS > 1 needs REDIS_URL (or REDIS_SENTINELS): without it every "
                "worker would keep its own limits and a key could use its quota once per worker"
            )
        return self

    @property
    def worker_count(self) -> int:
        """The worker processes to start: GATEWAY_WORKERS, or the cores this process may use."""
        if self.gateway_workers == "auto":
            return min(len(os.sched_getaffinity(0)), 64)
        return self.gateway_workers

    @property
    def uses_redis(self) -> bool:
        """Whether limits and key-cache events go through Redis (a URL or sentinels)."""
        return bool(self.redis_url or self.sentinel_addresses)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs."""
        return [_host_and_port(part) for part in (self.redis_sentinels or "").split(",") if part]

    @property
    def traces_endpoint(self) -> str | None:
        """Where spans are exported (OTLP/HTTP), or None when tracing is off."""
        if self.otel_sdk_disabled:
            return None
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        base = self.otel_exporter_otlp_endpoint
        return f"{base.rstrip('/')}/v1/traces" if base else None

    @property
    def media_domains(self) -> tuple[str, ...]:
        """GATEWAY_MEDIA_DOMAINS as a tuple of lower-case hosts or *.suffix patterns."""
        value = self.gateway_media_domains or ""
        return tuple(part.strip().lower() for part in value.split(",") if part.strip())

    @property
    def backend_urls(self) -> list[str]:
        """The configured backend base URLs, each without a trailing slash."""
        return backend_urls(self.vllm_url)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL SQLAlchemy connects to."""
        return self.database_url or f"sqlite+aiosqlite:///{self.database_path}"


def backend_urls(value: str) -> list[str]:
    """Split a comma-separated VLLM_URL into clean base URLs."""
    return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]


def backend_url_problem(url: str) -> str | None:
    """Why a backend URL cannot be used, or None: http(s), a host, no credentials in it."""
    if not url.startswith(("http://", "https://")):
        return f"backend URL must start with http:// or https://: {url!r}"
    parts = urlsplit(url)
    if not parts.hostname:
        return f"backend URL names no host: {url!r}"
    if parts.username is not None or parts.password is not None:
        # Never echoed: the URL holds a secret. The gateway sends a backend's key as a bearer.
        return "a backend URL must not hold credentials: give the backend's key as its key"
    return None


def _host_and_port(address: str) -> tuple[str, int]:
    """ "host:port" (port 26379, Sentinel's, when left out) as a pair; ValueError if malformed."""
    host, colon, port = address.strip().rpartition(":")
    if not colon:
        host, port = address.strip(), "26379"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"REDIS_SENTINELS: {address!r} is not host:port")
    return host, int(port)
