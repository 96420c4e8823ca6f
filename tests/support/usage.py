"""Read what a running gateway recorded: its usage events, straight from its database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vllm_gateway.db.tables import auth_failures, usage_events


def recorded_events(gateway: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every usage event (oldest first) after flushing the gateway's writer."""
    services = gateway.services

    async def read() -> list[dict[str, Any]]:
        await services.usage.flush()
        conditions = [usage_events.c[name] == value for name, value in filters.items()]
        statement = select(usage_events).where(*conditions).order_by(usage_events.c.id)
        async with services.database.engine.connect() as connection:
            return [dict(row) for row in (await connection.execute(statement)).mappings()]

    result: list[dict[str, Any]] = gateway.call(read())
    return result


def auth_failure_counts(gateway: Any) -> dict[str, int]:
    """Failed authentications per reason, summed over minutes, after a flush."""
    services = gateway.services

    async def read() -> dict[str, int]:
        await services.usage.flush()
        async with services.database.engine.connect() as connection:
            rows = (await connection.execute(select(auth_failures))).mappings().all()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["reason"]] = counts.get(row["reason"], 0) + int(row["count"])
        return counts

    result: dict[str, int] = gateway.call(read())
    return result
