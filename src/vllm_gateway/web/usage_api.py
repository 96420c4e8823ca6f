"""Usage reports: /api/v1/usage and /api/v1/stats (admin), /api/v1/me (a client's own key)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from vllm_gateway.access.credentials import read_credential
from vllm_gateway.accounting.usage_csv import usage_csv
from vllm_gateway.clock import utc_day
from vllm_gateway.db import usage as db_usage
from vllm_gateway.errors import GatewayError
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import permit
from vllm_gateway.web.errors import error_responses
from vllm_gateway.web.keys_api import LimitValues

router = APIRouter(tags=["usage"], responses=error_responses(400, 401, 403, 429))
admin = [Depends(permit("usage.read"))]

MAX_RANGE_DAYS = 3660
SERIES_MINUTES = 60
PERCENTILES = (0.5, 0.95, 0.99)


class Sums(BaseModel):
    """Request and token counts over some period."""

    requests: int = Field(description="Requests admitted and sent to a backend")
    errors: int = Field(
        description="Of those, failed (a status >= 400 from the backend or the gateway); "
        "a client that cancelled is not an error"
    )
    rejected: int = Field(description="Requests the gateway refused itself (never forwarded)")
    cancelled: int = Field(description="Requests whose client left before the answer (499)")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float = Field(0.0, description="At the models' prices when each request ended")


class DaySums(Sums):
    """Sums of one UTC day."""

    day: str = Field(description="YYYY-MM-DD (UTC)")


class KeySums(Sums):
    """Sums of one key."""

    key_id: str
    name: str | None = Field(description="The key's name; null once the key is deleted")


class ModelSums(Sums):
    """Sums of one model."""

    model: str


class UsageReport(BaseModel):
    """Usage over a range of UTC days, from the daily rollups."""

    since: str = Field(description="First day included (YYYY-MM-DD, UTC)")
    until: str = Field(description="Last day included (YYYY-MM-DD, UTC)")
    key_id: str | None
    model: str | None
    totals: Sums
    rejected_by_reason: dict[str, int] = Field(
        description="Refused requests per reason (the limit hit, model_not_allowed, …)"
    )
    average_latency_ms: float | None
    daily: list[DaySums] = Field(description="One entry per day of the range, oldest first")
    by_key: list[KeySums] = Field(description="Busiest keys first (at most 100)")
    by_model: list[ModelSums] = Field(description="Busiest models first (at most 100)")


class MinuteSums(BaseModel):
    """Traffic of one minute."""

    time: datetime = Field(description="Start of the minute (UTC)")
    requests: int
    errors: int
    rejected: int
    tokens: int


class Latency(BaseModel):
    """Latency percentiles in milliseconds (null without traffic)."""

    p50: float | None
    p95: float | None
    p99: float | None


class RecentRequest(BaseModel):
    """One recent request (never its prompt or answer)."""

    time: datetime
    request_id: str
    key_id: str
    key_name: str | None
    model: str
    route: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: float
    ttft_ms: float | None
    stream: bool
    admitted: bool = Field(description="False: the gateway refused it (see reason)")
    reason: str | None = Field(description="Why it was refused or failed, or client_closed")


class Stats(BaseModel):
    """The dashboard's live view."""

    time: datetime = Field(description="When these stats were computed (UTC)")
    today: DaySums = Field(description="Totals of the current UTC day")
    per_minute: list[MinuteSums] = Field(description="The last 60 minutes, oldest first")
    last_hour: Sums = Field(description="Totals of the last 60 minutes")
    error_rate: float = Field(description="Errors / requests over the last 60 minutes (0-1)")
    rejected_by_reason: dict[str, int] = Field(description="Today's refusals per reason")
    latency_ms: Latency = Field(description="Over the last 60 minutes")
    in_flight: int = Field(description="Requests being forwarded now (by every worker)")
    active_keys: int = Field(description="Keys that made a request today")
    enabled_keys: int = Field(description="Keys neither revoked nor expired")
    top_keys: list[KeySums] = Field(description="Today's busiest keys (at most 10)")
    top_models: list[ModelSums] = Field(description="Today's busiest models (at most 10)")
    recent: list[RecentRequest] = Field(description="The latest 20 requests, newest first")


class Today(DaySums):
    """A key's use of the current UTC day."""

    requests_remaining: int | None = Field(description="null: no daily request limit")
    tokens_remaining: int | None = Field(description="null: no daily token limit")


class MyUsage(BaseModel):
    """What a client key may know about itself."""

    id: str
    name: str
    models: list[str] = Field(description="Models the key may use; empty: all")
    expires_at: datetime | None
    limits: LimitValues
    today: Today
    daily: list[DaySums] = Field(description="The last 30 days, oldest first")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _sums(row: Any) -> dict[str, Any]:
    prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
    return {
        "requests": int(row["requests"] or 0),
        "errors": int(row["errors"] or 0),
        "rejected": int(row["rejected"] or 0),
        "cancelled": int(row["cancelled"] or 0),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_usd": round(float(row.get("cost_usd") or 0.0), 6),
    }


def _zero() -> dict[str, int]:
    return {
        "requests": 0,
        "errors": 0,
        "rejected": 0,
        "cancelled": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def _parse_day(value: str | None, param: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise GatewayError(
            400, f"{param} must be a date such as 2025-01-31", "invalid_request", param=param
        ) from None


def _days_before(last: date, days: int, param: str) -> date:
    try:
        return last - timedelta(days=days)
    except OverflowError:
        raise GatewayError(
            400, f"{param} is too early a date", "invalid_request", param=param
        ) from None


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _filled(rows: Any, days: list[str]) -> list[DaySums]:
    by_day = {row["day"]: row for row in rows}
    return [DaySums(day=day, **_sums(by_day.get(day) or _zero())) for day in days]


KeyParam = Annotated[str | None, Query(description="Only this key")]
ModelParam = Annotated[str | None, Query(description="Only this model")]
SinceParam = Annotated[
    str | None, Query(description="First day, YYYY-MM-DD (UTC) [default: 29 days ago]")
]
UntilParam = Annotated[str | None, Query(description="Last day, YYYY-MM-DD [default: today]")]
TeamParam = Annotated[str | None, Query(description="Only the keys now in this team")]


@dataclass(frozen=True)
class ReportRange:
    """A report's filter and its first and last day."""

    where: db_usage.UsageFilter
    first: date
    last: date


async def report_range(
    request: Request,
    key_id: KeyParam = None,
    model: ModelParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    team_id: TeamParam = None,
) -> ReportRange:
    """The query of a usage report or export; the range defaults to the last 30 days."""
    services = _services(request)
    last = _parse_day(until, "until") or date.fromisoformat(utc_day(services.clock()))
    first = _parse_day(since, "since") or _days_before(last, 29, "until")
    if first > last:
        raise GatewayError(400, "since is after until", "invalid_request", param="since")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise GatewayError(400, "at most ten years at once", "invalid_request", param="since")
    where = db_usage.UsageFilter(
        key_id or None, model or None, first.isoformat(), last.isoformat(), team_id or None
    )
    return ReportRange(where, first, last)


@router.get("/api/v1/usage", response_model=UsageReport, dependencies=admin)
async def usage_report(
    request: Request, report: Annotated[ReportRange, Depends(report_range)]
) -> UsageReport:
    """Totals, a daily series and per-key and per-model sums over a range of days."""
    services = _services(request)
    where, first, last = report.where, report.first, report.last
    async with services.database.engine.connect() as connection:
        totals = await db_usage.daily_totals(connection, where)
        refusals = await db_usage.rejections_by_reason(connection, where)
        series = await db_usage.daily_series(connection, where)
        keys = await db_usage.top_keys(connection, where, limit=100)
        # Per model, every model the key used, even when the report is for one model.
        models = await db_usage.top_models(connection, replace(where, model=None), limit=100)
    requests = int(totals["requests"] or 0)
    return UsageReport(
        since=first.isoformat(),
        until=last.isoformat(),
        key_id=where.key_id,
        model=where.model,
        totals=Sums(**_sums(totals)),
        rejected_by_reason=refusals,
        average_latency_ms=float(totals["latency_ms_sum"]) / requests if requests else None,
        daily=_filled(series, _days(first, last)),
        by_key=[KeySums(key_id=row["key_id"], name=row["name"], **_sums(row)) for row in keys],
        by_model=[ModelSums(model=row["model"], **_sums(row)) for row in models],
    )


@router.get(
    "/api/v1/usage/export.csv",
    dependencies=admin,
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per day, key and model"}},
)
async def usage_export(
    request: Request, report: Annotated[ReportRange, Depends(report_range)]
) -> Response:
    """The billing export as CSV: one row per UTC day, key and model (as `usage --csv`)."""
    services = _services(request)
    where, first, last = report.where, report.first, report.last
    async with services.database.engine.connect() as connection:
        rows = await db_usage.daily_rows(connection, where)
    filename = f"usage-{first.isoformat()}-to-{last.isoformat()}.csv"
    return Response(
        usage_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/api/v1/stats", response_model=Stats, dependencies=admin)
async def stats(request: Request) -> Stats:
    """Today's totals, the last hour minute by minute, latency, top keys and recent requests."""
    services = _services(request)
    now = services.clock()
    today = utc_day(now)
    first_minute = int(now // 60) - (SERIES_MINUTES - 1)
    since_ts = first_minute * 60.0
    async with services.database.engine.connect() as connection:
        dialect = services.database.dialect
        today_only = db_usage.UsageFilter(since=today, until=today)
        totals = await db_usage.daily_totals(connection, today_only)
        refusals = await db_usage.rejections_by_reason(connection, today_only)
        minutes = await db_usage.per_minute(connection, dialect, since_ts)
        latency = await db_usage.latency_percentiles(connection, dialect, since_ts, PERCENTILES)
        active = await db_usage.count_active_keys(connection, today)
        enabled = await db_usage.count_enabled_keys(connection, datetime.fromtimestamp(now, UTC))
        keys = await db_usage.top_keys(connection, today_only, limit=10)
        models = await db_usage.top_models(connection, today_only, limit=10)
        recent = await db_usage.recent_events(connection, limit=20)
    by_minute = {int(row["minute"]): _sums(row) for row in minutes}
    series = []
    hour = _zero()
    for minute in range(first_minute, first_minute + SERIES_MINUTES):
        sums = by_minute.get(minute) or _sums(_zero())
        for name in hour:
            hour[name] += sums[name]
        series.append(
            MinuteSums(
                time=datetime.fromtimestamp(minute * 60, UTC),
                requests=sums["requests"],
                errors=sums["errors"],
                rejected=sums["rejected"],
                tokens=sums["total_tokens"],
            )
        )
    p50, p95, p99 = latency
    return Stats(
        time=datetime.fromtimestamp(now, UTC),
        today=DaySums(day=today, **_sums(totals)),
        per_minute=series,
        last_hour=Sums(**_sums(hour)),
        error_rate=hour["errors"] / hour["requests"] if hour["requests"] else 0.0,
        rejected_by_reason=refusals,
        latency_ms=Latency(p50=p50, p95=p95, p99=p99),
        in_flight=services.metrics.in_flight_everywhere(),
        active_keys=active,
        enabled_keys=enabled,
        top_keys=[KeySums(key_id=row["key_id"], name=row["name"], **_sums(row)) for row in keys],
        top_models=[ModelSums(model=row["model"], **_sums(row)) for row in models],
        recent=[
            RecentRequest(
                time=datetime.fromtimestamp(row["ts"], UTC),
                request_id=row["request_id"],
                key_id=row["key_id"],
                key_name=row["key_name"],
                model=row["model"],
                route=row["route"],
                status=row["status"],
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                total_tokens=row["prompt_tokens"] + row["completion_tokens"],
                latency_ms=row["latency_ms"],
                ttft_ms=row["ttft_ms"],
                stream=bool(row["stream"]),
                admitted=bool(row["admitted"]),
                reason=row["reason"],
            )
            for row in recent
        ],
    )


@router.get("/api/v1/me", response_model=MyUsage)
async def my_usage(request: Request) -> MyUsage:
    """The calling client key's limits, today's use and the last 30 days (x-api-key or Bearer)."""
    services = _services(request)
    key = await services.keys.authenticate(read_credential(request.scope["headers"]).presented)
    now = services.clock()
    last = date.fromisoformat(utc_day(now))
    first = last - timedelta(days=29)
    async with services.database.engine.connect() as connection:
        where = db_usage.UsageFilter(key.id, since=first.isoformat(), until=last.isoformat())
        series = await db_usage.daily_series(connection, where)
    daily = _filled(series, _days(first, last))
    today = daily[-1]
    return MyUsage(
        id=key.id,
        name=key.name,
        models=sorted(key.models),
        expires_at=None if key.expires_at is None else datetime.fromtimestamp(key.expires_at, UTC),
        limits=LimitValues(**key.limits.to_json()),
        today=Today(
            **today.model_dump(),
            requests_remaining=None
            if key.limits.daily_requests is None
            else max(0, key.limits.daily_requests - today.requests),
            tokens_remaining=None
            if key.limits.daily_tokens is None
            else max(0, key.limits.daily_tokens - today.total_tokens),
        ),
        daily=daily,
    )
