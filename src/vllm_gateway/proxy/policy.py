"""The Policy protocol: what a feature plugs into the pipeline instead of editing the proxy.

A policy sees each request it applies to twice: `on_request` after the body was read and
checked and before admission (refuse by raising a GatewayError, or change the payload
through `ctx.body`), and `on_response` after the exchange, before accounting. Which
policies apply to which route is worked out once at start-up, so a route pays only for the
policies that concern it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.routes import Route


class Policy(Protocol):
    """A check or change applied to the requests of some routes."""

    def applies_to(self, route: Route) -> bool:
        """Whether requests to `route` go through this policy."""
        ...

    async def on_request(self, ctx: RequestContext) -> None:
        """Before admission: raise a GatewayError to refuse, or change `ctx.body`."""
        ...

    async def on_response(self, ctx: RequestContext) -> None:
        """After the exchange (on every path that reached a backend), before accounting."""
        ...


class PolicyTable:
    """The policies of every route, in the order they were given."""

    def __init__(self, policies: Sequence[Policy], routes: Iterable[Route]) -> None:
        self._by_route = {
            route: tuple(policy for policy in policies if policy.applies_to(route))
            for route in routes
        }

    def __getitem__(self, route: Route) -> tuple[Policy, ...]:
        return self._by_route[route]
