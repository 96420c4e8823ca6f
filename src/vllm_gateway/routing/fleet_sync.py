"""Fleet changes made at run time: applied in every worker and instance, and kept across restarts.

An admin call (drain, resume, add, remove) lands on one worker of one instance. It is applied
there at once, stored in the database (`fleet_runtime`, one row per backend name: what the
changes say of it now), then published on Redis's `vgw:fleet` channel; each subscriber (the
sender too) applies it again, which changes nothing twice: draining a draining backend,
removing a removed one or adding a known name are no-ops. Without Redis the change reaches the
other workers and instances through the database, which every worker reads again every
GATEWAY_FLEET_REFRESH seconds (only rows changed since it last applied them), so a missed
message or a Redis outage converges too.

At start, the fleet is the fleet file (or VLLM_URL) with the stored changes applied on top,
oldest first: which wins is per backend name, the latest word of an operator. A backend
removed at run time stays removed though the file names it (`backends add` brings it back); a
drained one stays drained until resumed; one added at run time is added again, unless the
file now names a backend so called: then the file's settings win (an operator who wrote the
added backend into the file meant those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.db.engine import Database
from vllm_gateway.db.fleet import fetch_fleet_changes, upsert_fleet_change
from vllm_gateway.resp.errors import RedisError
from vllm_gateway.routing.backend import BackendSpec
from vllm_gateway.routing.pool import BackendPool

if TYPE_CHECKING:
    from vllm_gateway.resp.client import RedisClient
    from vllm_gateway.resp.subscription import Subscription

log = logging.getLogger(__name__)

CHANNEL = "vgw:fleet"
_ROWS: dict[str, dict[str, Any]] = {
    "add": {"removed": False, "draining": False},
    "remove": {"spec": None, "removed": True, "draining": False},
    "drain": {"draining": True},
    "resume": {"draining": False},
}
"""What each change stores of its backend (besides `spec` for an add)."""


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
        database: Database,
        redis: RedisClient | None = None,
        subscriber: RedisClient | None = None,
        refresh_seconds: float = 10.0,
    ) -> None:
        self.pool = pool
        self.refresh_seconds = refresh_seconds
        self._database = database
        self._redis = redis
        self._subscriber = subscriber
        self._pubsub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._seen: dict[str, float] = {}  # backend name -> updated_at of the row applied

    async def start(self) -> None:
        """Apply the stored changes, then follow the others' (Redis, and the database)."""
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="fleet-refresh")
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
        for task in (self._task, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    async def change(self, op: str, name: str, spec: dict[str, Any] | None = None) -> Any:
        """Apply a change here, then tell the others; returns what the pool returned."""
        result = await self._apply(op, name, spec)
        if result is not None:
            await self._store(op, name, spec)
        if self._redis is not None:
            message = orjson.dumps({"op": op, "name": name, "spec": spec})
            try:
                await self._redis.publish(CHANNEL, message)
            except (RedisError, OSError):
                log.warning("could not publish a fleet change: other workers did not get it")
        return result

    async def _store(self, op: str, name: str, spec: dict[str, Any] | None) -> None:
        values: dict[str, Any] = {"name": name, "updated_at": time.time(), **_ROWS[op]}
        if op == "add":
            values["spec"] = orjson.dumps(spec).decode()
        try:
            async with self._database.engine.begin() as connection:
                await upsert_fleet_change(connection, values)
        except (SQLAlchemyError, OSError):
            log.warning("could not store a fleet change (%s %s): a restart will undo it", op, name)

    async def refresh(self) -> None:
        """Apply the stored changes this worker has not applied yet, oldest first."""
        try:
            async with self._database.engine.connect() as connection:
                rows = await fetch_fleet_changes(connection)
        except (SQLAlchemyError, OSError):
            log.warning("could not read the stored fleet changes")
            return
        for row in rows:
            if self._seen.get(row["name"], float("-inf")) >= row["updated_at"]:
                continue
            self._seen[row["name"]] = row["updated_at"]
            try:
                await self._restore(row)
            except Exception:
                log.exception("a stored fleet change for %s failed", row["name"])

    async def _restore(self, row: RowMapping) -> None:
        pool, name = self.pool, row["name"]
        if row["removed"]:
            pool.remove(name)
            return
        if row["spec"] is not None and pool.by_name(name) is None:
            await pool.add(_spec(orjson.loads(row["spec"])))
        pool.set_draining(name, bool(row["draining"]))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh()

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
