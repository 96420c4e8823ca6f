"""The policies every request runs through, in order (see policy.py for the protocol)."""

from __future__ import annotations

from vllm_gateway.proxy.authorize import ModelPolicy
from vllm_gateway.proxy.cache_isolation import CacheIsolation
from vllm_gateway.proxy.media_policy import MediaPolicy
from vllm_gateway.proxy.policy import Policy
from vllm_gateway.services import Services


def standard_policies(services: Services) -> list[Policy]:
    """Model allowlist first (it refuses the cheapest way), then media URLs, then the salt."""
    settings = services.settings
    policies: list[Policy] = [
        ModelPolicy(),
        MediaPolicy(settings.gateway_media_urls, settings.media_domains),
    ]
    if services.cache_salt_secret is not None:
        policies.append(CacheIsolation(services.cache_salt_secret))
    return policies
