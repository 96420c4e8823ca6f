"""Fleet changes made through one worker reach every worker and instance, through Redis.

An admin call (drain, resume, add, remove) lands on one worker of one instance; the others
learn it from the `vgw:fleet` channel. Every change is applied where it was made at once,
then published; each subscriber (the sender too) applies it again, which changes nothing
twice: draining a draining backend, removing a removed one or adding a known name are no-ops.
Without Redis (one worker, one instance) changes are local and nothing is published. A worker
that starts later reads the fleet file, not the changes: repeat them after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vllm_gateway.routing.backend import BackendSpec
from vllm_gateway.routing.pool import BackendPool

log = logging.getLogger(__name__)

CHANNEL = "vgw:fleet"


def _spec(fields: dict[str, Any]) -> BackendSpec:
    models = fields.get("models")
    return BackendSpec(
        url=fields["url"],
        name=fields.get("name"),
        api_key=fields.get("api_key"),
        weight=float(fields.get("weight", 1.0)),
        models=None if models is None else frozenset(models),
        labels=dict(fields.get("labels") or {}),
        max_concurrency=fields.get("max_concurrency"),
    )


class FleetSync:
    """Applies fleet changes to this worker's pool and publishes them to the others."""

    def __init__(
        self,
        pool: BackendPool,
        redis: aioredis.Redis | None = None,
        subscriber: aioredis.Redis | None = None,
    ) -> None:
        self.pool = pool
        self._redis = redis
        self._subscriber = subscriber
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for the other workers' changes (with Redis)."""
        if self._subscriber is None:
            return
        self._pubsub = self._subscriber.pubsub()
        try:
            await self._pubsub.subscribe(CHANNEL)
        except (RedisError, OSError):
            log.warning("cannot subscribe to fleet changes: they stay in the worker that gets them")
            return
        self._task = asyncio.create_task(self._listen(), name="fleet-changes")

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    async def change(self, op: str, name: str, spec: dict[str, Any] | None = None) -> Any:
        """Apply a change here, then tell the others; returns what the pool returned."""
        result = await self._apply(op, name, spec)
        if self._redis is not None:
            message = orjson.dumps({"op": op, "name": name, "spec": spec})
            try:
                await self._redis.publish(CHANNEL, message)
            except (RedisError, OSError):
                log.warning("could not publish a fleet change: other workers did not get it")
        return result

    async def _apply(self, op: str, name: str, spec: dict[str, Any] | None) -> Any:
        pool = self.pool
        if op == "drain":
            return pool.set_draining(name, True)
        if op == "resume":
            return pool.set_draining(name, False)
        if op == "remove":
            return pool.remove(name)
        if op == "add" and spec is not None:
            if pool.by_name(name) is not None:
                raise ValueError(f"a backend is already called {name!r}")
            return await pool.add(_spec(spec))
        raise ValueError(f"unknown fleet change {op!r}")

    async def _listen(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=30.0)
            except (RedisError, OSError):
                log.warning("lost the fleet change channel; reconnecting")
                await asyncio.sleep(1.0)
                continue
            if message is None or message["type"] != "message":
                continue
            try:
                change = orjson.loads(message["data"])
                await self._apply(change["op"], change["name"], change.get("spec"))
            except ValueError:
                pass  # already applied here (the sender, or a repeated add)
            except Exception:
                log.exception("a fleet change from another worker failed")
