"""Queries on model_prices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.engine import insert_for
from vllm_gateway.db.tables import model_prices


async def fetch_prices(connection: AsyncConnection) -> Sequence[RowMapping]:
    """Every price, by model."""
    statement = select(model_prices).order_by(model_prices.c.model)
    return (await connection.execute(statement)).mappings().all()


async def fetch_price(connection: AsyncConnection, model: str) -> RowMapping | None:
    """One model's price, or None."""
    statement = select(model_prices).where(model_prices.c.model == model)
    return (await connection.execute(statement)).mappings().first()


async def upsert_price(connection: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Set one model's price (insert or replace)."""
    statement = insert_for(connection.dialect.name)(model_prices).values(**values)
    changed = {name: statement.excluded[name] for name in values if name != "model"}
    await connection.execute(
        statement.on_conflict_do_update(index_elements=[model_prices.c.model], set_=changed)
    )


async def delete_price(connection: AsyncConnection, model: str) -> bool:
    """Remove one model's price; False if it had none."""
    result = await connection.execute(delete(model_prices).where(model_prices.c.model == model))
    return result.rowcount > 0
