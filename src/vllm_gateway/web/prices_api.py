"""Admin JSON API for model prices: /api/v1/prices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from vllm_gateway.accounting.prices import gpu_price
from vllm_gateway.errors import GatewayError
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import AdminPrincipal, permit_by_method, require_admin
from vllm_gateway.web.errors import error_responses

router = APIRouter(
    prefix="/api/v1/prices",
    tags=["prices"],
    dependencies=[Depends(permit_by_method("prices"))],
    responses=error_responses(400, 401, 403, 404, 429),
)
Principal = Annotated[AdminPrincipal, Depends(require_admin)]
Number = StrictFloat | StrictInt


class PriceIn(BaseModel):
    """A price in USD per million tokens, or the GPU arithmetic to derive one."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: Number | None = Field(None, description="USD per million prompt tokens")
    output_per_million: Number | None = Field(None, description="USD per million completion tokens")
    cached_input_per_million: Number | None = Field(
        None, description="USD per million cached prompt tokens (null: as input)"
    )
    gpu_hourly_usd: Number | None = Field(
        None, description="Instead of the prices: a GPU's cost per hour..."
    )
    gpu_tokens_per_second: Number | None = Field(
        None, description="...and its measured throughput (both directions priced alike)"
    )


class PriceOut(BaseModel):
    """A model's price."""

    model: str
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None
    derivation: str | None = Field(None, description="The GPU arithmetic, when derived")


class PriceList(BaseModel):
    """Every price, by model."""

    object: Literal["list"] = "list"
    data: list[PriceOut]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("", response_model=PriceList, summary="List prices")
async def list_prices(request: Request) -> dict[str, Any]:
    """Every model's price (a model without one costs nothing)."""
    prices = _services(request).prices
    await prices.reload()
    data = [{"model": model, **price.to_json()} for model, price in sorted(prices.all().items())]
    return {"object": "list", "data": data}


@router.put("/{model:path}", response_model=PriceOut, summary="Set a model's price")
async def set_price(
    request: Request, principal: Principal, model: str, body: PriceIn
) -> dict[str, Any]:
    """Set the price per million tokens, or derive it from a GPU's hourly cost and throughput."""
    derivation = None
    values = body.model_dump()
    if body.gpu_hourly_usd is not None or body.gpu_tokens_per_second is not None:
        if body.gpu_hourly_usd is None or body.gpu_tokens_per_second is None:
            raise GatewayError(
                400,
                "give both gpu_hourly_usd and gpu_tokens_per_second",
                "invalid_request",
                param="gpu_hourly_usd",
            )
        try:
            price, derivation = gpu_price(body.gpu_hourly_usd, body.gpu_tokens_per_second)
        except ValueError as exc:
            raise GatewayError(400, str(exc), "invalid_request", param="gpu_hourly_usd") from None
        values["input_per_million"] = values["output_per_million"] = price
    for required in ("input_per_million", "output_per_million"):
        if values[required] is None:
            raise GatewayError(400, f"{required} is required", "invalid_request", param=required)
    stored = await _services(request).prices.set(
        model,
        input=values["input_per_million"],
        output=values["output_per_million"],
        cached_input=values["cached_input_per_million"],
        actor=principal.actor(request),
    )
    return {"model": model, **stored.to_json(), "derivation": derivation}


@router.delete("/{model:path}", summary="Remove a model's price")
async def delete_price(request: Request, principal: Principal, model: str) -> dict[str, Any]:
    """The model's requests cost nothing from now on."""
    await _services(request).prices.delete(model, actor=principal.actor(request))
    return {"model": model, "deleted": True}
