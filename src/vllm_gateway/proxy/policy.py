"""Policies: what a feature plugs into the pipeline instead of editing the proxy.

A policy sees each request it applies to twice: `on_request` after the body was read and
checked and before admission (refuse by raising a GatewayError, or change the payload
through `ctx.body`), and `on_response` after the exchange, before accounting. Both do
nothing unless a policy overrides them. Which policies apply to which route is worked out
once at start-up, and only the policies that override `on_response` are called after the
answer, so a request pays only for what concerns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.routes import Route


class Policy:
    """A check or change applied to the requests of some routes."""

    def applies_to(self, route: Route) -> bool:
        """Whether requests to `route` go through this policy."""
        raise NotImplementedError

    async def on_request(self, ctx: RequestContext) -> None:
        """Before admission: raise a GatewayError to refuse, or change `ctx.body`."""

    async def on_response(self, ctx: RequestContext) -> None:
        """After the exchange (on every path that reached a backend), before accounting."""


def _acts_after(policy: Policy) -> bool:
    return type(policy).on_response is not Policy.on_response


class PolicyTable:
    """The policies of every route, in the order they were given: before and after."""

    def __init__(self, policies: Sequence[Policy], routes: Iterable[Route]) -> None:
        self.before: dict[Route, tuple[Policy, ...]] = {}
        self.after: dict[Route, tuple[Policy, ...]] = {}
        for route in routes:
            mine = tuple(policy for policy in policies if policy.applies_to(route))
            self.before[route] = tuple(
                policy for policy in mine if type(policy).on_request is not Policy.on_request
            )
            self.after[route] = tuple(policy for policy in mine if _acts_after(policy))
