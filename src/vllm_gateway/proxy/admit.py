"""Admission: size the request's worst case in tokens, then reserve it on every subject.

The reservation is `prompt estimate + n * max_tokens`; a request without max_tokens may
generate whatever the model's context length leaves after its prompt, so that is what it
reserves. max_tokens above the model's context length cannot be served by any backend: a
400 before any limiter (or Redis) is asked. All subjects of the request (its key and the
key's team) are reserved in one atomic limiter call; when one of them has a budget, the
worst case is priced too (prompt at the input price, the rest at the output price).
"""

from __future__ import annotations

from vllm_gateway.limits.base import BUDGET_REASONS, RateLimitExceeded
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.request_body import RequestBody, bad_request
from vllm_gateway.proxy.routes import Route
from vllm_gateway.services import Services

FALLBACK_CONTEXT_LENGTH = 32_768
"""Tokens assumed for a model no backend has described yet (every backend down)."""


def worst_case_tokens(route: Route, body: RequestBody, context_length: int) -> int:
    """Prompt estimate plus everything the request may generate."""
    prompt = body.prompt_estimate
    if not route.generates:
        return prompt
    cap = body.max_tokens
    per_choice = cap if cap is not None else max(0, context_length - prompt)
    return prompt + body.choices * per_choice


async def admit(ctx: RequestContext, services: Services) -> None:
    """Reserve the request on its subjects' limits, or raise (400 or 429)."""
    key, body = ctx.key, ctx.body
    assert key is not None and body is not None
    context_length = services.backends.context_length(ctx.model) or FALLBACK_CONTEXT_LENGTH
    if body.max_tokens is not None and body.max_tokens > context_length:
        raise bad_request(
            f"max_tokens is {body.max_tokens}, but the model's context length is "
            f"{context_length} tokens",
            "max_tokens",
        )
    ctx.tokens = tokens = worst_case_tokens(ctx.route, body, context_length)
    cost = 0
    if key.has_budget:
        prompt = min(body.prompt_estimate, tokens)
        cost = services.prices.worst_case_micros(ctx.model, prompt, tokens - prompt)
    try:
        ctx.reservation = await services.limiter.acquire(key.subjects, tokens, ctx.request_id, cost)
    except RateLimitExceeded as refused:
        if refused.subject is not None and refused.reason in BUDGET_REASONS:
            services.alerts.exhausted(refused.subject, refused.reason)
        raise
    ctx.headers.extend(ctx.reservation.headers)
