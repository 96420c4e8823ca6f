"""The policies every request runs through, in order (see policy.py for the protocol)."""

from __future__ import annotations

from vllm_gateway.proxy.authorize import ModelPolicy
from vllm_gateway.proxy.policy import Policy
from vllm_gateway.services import Services


def standard_policies(services: Services) -> list[Policy]:
    """Model allowlist first: it refuses the cheapest way."""
    return [ModelPolicy()]
