"""Prices per model and the cost of a request: what every usage event and budget counts.

A price is USD per million tokens (input, cached input, output). USD per million tokens
is micro-USD per token, so a cost in micro-dollars is `tokens * price`: budgets count
those, rounded up for a reservation (the worst case) and to the nearest for the real
cost. A model without a price costs nothing. For self-hosted GPUs `gpu_price()` derives
a price from a GPU's hourly cost and its measured throughput.

Each worker keeps the table in memory (`PriceBook`), read at start and again every
REFRESH_SECONDS, and at once after a change made through this worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import SYSTEM, Actor
from vllm_gateway.clock import Clock
from vllm_gateway.db import prices as db_prices
from vllm_gateway.db.engine import Database
from vllm_gateway.errors import GatewayError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 10.0
MAX_PRICE = 1e6  # USD per million tokens


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None  # None: cached input costs what input costs

    def cost_micros(self, prompt_tokens: int, completion_tokens: int, cached: int = 0) -> float:
        """The cost in micro-USD (fractional)."""
        cached = min(max(cached, 0), prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt_tokens - cached) * self.input
            + cached * cached_price
            + completion_tokens * self.output
        )

    def to_json(self) -> dict[str, float | None]:
        """The API's field names."""
        return {
            "input_per_million": self.input,
            "cached_input_per_million": self.cached_input,
            "output_per_million": self.output,
        }


def gpu_price(hourly_usd: float, tokens_per_second: float) -> tuple[float, str]:
    """A price per million tokens from a GPU's hourly cost and throughput, with the arithmetic."""
    if hourly_usd < 0 or tokens_per_second <= 0:
        raise ValueError("the hourly cost must be >= 0 and the throughput > 0")
    per_hour = tokens_per_second * 3600
    price = hourly_usd / per_hour * 1_000_000
    working = (
        f"${hourly_usd:g}/h / ({tokens_per_second:g} tokens/s x 3600 s/h = {per_hour:,.0f} "
        f"tokens/h) x 1,000,000 = ${price:.6f} per million tokens"
    )
    return price, working


def _check_price(name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GatewayError(400, f"{name} must be a number", "invalid_request", param=name)
    if not 0 <= value <= MAX_PRICE:
        raise GatewayError(
            400, f"{name} must be between 0 and {MAX_PRICE:g}", "invalid_request", param=name
        )
    return float(value)


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise GatewayError(400, "model must be a name of 1-200 characters", "invalid_request")
    return model.strip()


def _price_from_row(row: Mapping[Any, Any]) -> Price:
    return Price(
        input=float(row["input_per_million"]),
        output=float(row["output_per_million"]),
        cached_input=row["cached_input_per_million"],
    )


class PriceBook:
    """The price table, kept in memory by each worker and changed through the database."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock
        self._prices: dict[str, Price] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the table and keep it fresh in the background."""
        await self.reload()
        self._task = asyncio.create_task(self._refresh_loop(), name="prices-refresh")

    async def close(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        """Read every price again (kept as it was when the database is away)."""
        try:
            async with self._database.engine.connect() as connection:
                rows = await db_prices.fetch_prices(connection)
        except (SQLAlchemyError, OSError) as exc:
            log.debug("prices not refreshed: %s", exc)
            return
        self._prices = {row["model"]: _price_from_row(row) for row in rows}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.reload()

    # --- the hot path ---------------------------------------------------------------------

    def worst_case_micros(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        """What a request may cost at most, in whole micro-USD (rounded up)."""
        price = self._prices.get(model)
        if price is None:
            return 0
        return math.ceil(price.input * prompt_tokens + price.output * completion_tokens)

    def cost_micros(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        """What a request cost, in whole micro-USD."""
        price = self._prices.get(model)
        if price is None:
            return 0
        return round(price.cost_micros(prompt_tokens, completion_tokens))

    # --- administration -------------------------------------------------------------------

    def all(self) -> dict[str, Price]:
        """Every price this worker knows."""
        return dict(self._prices)

    async def set(
        self,
        model: Any,
        *,
        input: Any,
        output: Any,
        cached_input: Any = None,
        actor: Actor = SYSTEM,
    ) -> Price:
        """Set a model's price (audited); other workers see it within REFRESH_SECONDS."""
        name = _check_model(model)
        price = Price(
            input=_check_price("input_per_million", input) or 0.0,
            output=_check_price("output_per_million", output) or 0.0,
            cached_input=_check_price("cached_input_per_million", cached_input, optional=True),
        )
        now = self._clock()
        async with self._database.engine.begin() as connection:
            old = await db_prices.fetch_price(connection, name)
            await db_prices.upsert_price(
                connection,
                {
                    "model": name,
                    **price.to_json(),
                    "updated_at": datetime.fromtimestamp(now, UTC),
                },
            )
            await audit.record(
                connection,
                actor,
                now,
                "price.set",
                "price",
                name,
                before=None if old is None else _price_from_row(old).to_json(),
                after=price.to_json(),
            )
        self._prices[name] = price
        return price

    async def delete(self, model: str, *, actor: Actor = SYSTEM) -> None:
        """Remove a model's price (its requests then cost nothing)."""
        now = self._clock()
        async with self._database.engine.begin() as connection:
            old = await db_prices.fetch_price(connection, model)
            if old is None or not await db_prices.delete_price(connection, model):
                raise GatewayError(
                    404, f"No price for the model {model!r}.", "not_found", param="model"
                )
            await audit.record(
                connection,
                actor,
                now,
                "price.delete",
                "price",
                model,
                before=_price_from_row(old).to_json(),
            )
        self._prices.pop(model, None)
