"""Prefix-cache isolation between tenants: a per-key `cache_salt` the gateway sets itself.

vLLM shares cached prompt prefixes between requests; a tenant that sends the same prefix
as another gets its first token sooner, and so can tell what others sent. vLLM partitions
its prefix cache by `cache_salt`: with GATEWAY_CACHE_ISOLATION=key the gateway sets it on
every chat, completions and responses request to an HMAC of the key id under a gateway
secret (random, stored in the database, the same for every instance), replacing any salt
the client sent. Requests of one key still share their cache; different keys never do.
"""

from __future__ import annotations

import hashlib
import hmac

from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.policy import Policy
from vllm_gateway.proxy.routes import Route


class CacheIsolation(Policy):
    """Sets each request's cache_salt from its key."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._salts: dict[str, str] = {}

    def applies_to(self, route: Route) -> bool:
        """Routes whose requests vLLM salts its prefix cache by."""
        return route.takes_cache_salt

    def salt(self, key_id: str) -> str:
        """The key's salt: 32 hex digits, the same on every gateway instance."""
        salt = self._salts.get(key_id)
        if salt is None:
            digest = hmac.new(self._secret, b"key:" + key_id.encode(), hashlib.sha256)
            salt = self._salts[key_id] = digest.hexdigest()[:32]
        return salt

    async def on_request(self, ctx: RequestContext) -> None:
        """Replace the body's cache_salt with the key's."""
        body, key = ctx.body, ctx.key
        assert body is not None and key is not None
        if body.payload is not None:
            body.payload["cache_salt"] = self.salt(key.id)
            body.changed = True
