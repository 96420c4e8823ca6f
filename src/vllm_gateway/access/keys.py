"""Client API keys: verification through a per-worker TTL cache, and their administration."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from vllm_gateway.access.client_key import ClientKey, allowed_models
from vllm_gateway.access.invalidations import Invalidations
from vllm_gateway.access.key_format import (
    display_prefix,
    hash_secret,
    new_key,
    new_secret,
    parse_key,
)
from vllm_gateway.access.key_records import (
    EDITABLE_FIELDS,
    CreatedKey,
    KeyRecord,
    record_from_row,
    validate_fields,
)
from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import SYSTEM, Actor
from vllm_gateway.clock import Clock
from vllm_gateway.db import keys as db_keys
from vllm_gateway.db import teams as db_teams
from vllm_gateway.db.engine import Database
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.model import LIMIT_NAMES, NO_LIMITS, Limits
from vllm_gateway.outages import Outage
from vllm_gateway.resp.errors import RedisError
from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    from vllm_gateway.resp.client import RedisClient
    from vllm_gateway.resp.subscription import Subscription

log = logging.getLogger(__name__)

INVALIDATE_CHANNEL: Final = "vgw:keys:invalidate"
"""Messages are `<key id>:<change>`; a bare `<key id>` (older gateways) means changed."""
CHANGED: Final = "changed"
REVOKED: Final = "revoked"
DELETED: Final = "deleted"
EVERY_KEY: Final = "*"
"""The key id of an invalidation that concerns every key (a team changed)."""
_LOOKUP_TIMEOUT = 3.0  # seconds; a database that hangs counts as unavailable
_NEGATIVE_CACHE_SIZE = 4096
_NEGATIVE_CACHE_TTL = 30.0
_CONCURRENT_LOOKUPS = 16


class KeyRefused(GatewayError):
    """A 403 for a genuine key that may no longer be used (revoked, expired)."""

    def __init__(self, key: ClientKey, message: str, code: str) -> None:
        super().__init__(403, message, code)
        self.key = key


class _DatabaseDown(Exception):
    """A key lookup could not reach the database."""


def _database_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The key store is unavailable; retry shortly.",
        "database_unavailable",
        headers=[(b"retry-after", b"2")],
    )


def _invalid_key() -> GatewayError:
    return GatewayError(401, "Invalid API key.", "invalid_api_key")


@dataclass(frozen=True, slots=True)
class _Verified:
    key: ClientKey
    secret_hash: str
    revoked: bool
    valid_until: float  # time.monotonic()
    previous_hash: str | None = None  # the secret before a rotation...
    previous_until: float = 0.0  # ...accepted until then (gateway clock)


class KeyStore:
    """Stores keys, verifies presented keys through a short-lived cache, administers keys."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        settings: Settings,
        redis: RedisClient | None,
        subscriber: RedisClient | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._settings = settings
        self._redis = redis
        self._invalidations = None if redis is None else Invalidations(redis, INVALIDATE_CHANNEL)
        self._subscriber = subscriber or redis
        self.outage = Outage("database (key lookups)", log)
        self._ttl = settings.gateway_key_cache_ttl
        self._cache: dict[str, _Verified] = {}
        self._unknown: dict[str, float] = {}
        self._loading: dict[str, asyncio.Task[_Verified | None]] = {}
        self._generation = 0
        self._lookups = asyncio.Semaphore(_CONCURRENT_LOOKUPS)
        self._used: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe to invalidations from other workers and start recording last use."""
        if self._subscriber is not None:
            self._pubsub = self._subscriber.pubsub()
            await self._pubsub.subscribe(INVALIDATE_CHANNEL)
            # Wait for the server's confirmation so no invalidation published after
            # start() returns can be missed.
            for _ in range(50):
                message = await self._pubsub.get_message(timeout=0.2)
                if message is not None and message["type"] == "subscribe":
                    break
            self._tasks.append(asyncio.create_task(self._listen(), name="keys-invalidations"))
        self._tasks.append(asyncio.create_task(self._touch_loop(), name="keys-last-used"))

    async def close(self) -> None:
        """Stop background tasks and write pending last-used times."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._invalidations is not None:
            await self._invalidations.close()
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
        await self._flush_used()

    @property
    def database(self) -> Database:
        """The database the keys live in."""
        return self._database

    @property
    def knows_keys(self) -> bool:
        """Whether some key was verified before (and could be served while the database is away)."""
        return bool(self._cache)

    # --- the hot path -------------------------------------------------------------------

    async def authenticate(self, presented: str | None) -> ClientKey:
        """The key behind `presented`, or a 401/403 (503 for an unseen key, database down).

        A key verified before stays usable from its last known record while the database
        is unreachable; revocations that arrive through Redis still apply at once.
        """
        parsed = parse_key(presented)
        if parsed is None:
            raise _invalid_key()
        key_id, secret = parsed
        verified = self._cache.get(key_id)
        if verified is None or verified.valid_until <= time.monotonic():
            try:
                verified = await self._lookup(key_id)
            except _DatabaseDown:
                if verified is None:
                    raise _database_unavailable() from None
            if verified is None:
                raise _invalid_key()
        # The secret is checked before the status so a known id alone reveals nothing.
        presented_hash = hash_secret(secret)
        if not hmac.compare_digest(presented_hash, verified.secret_hash) and not (
            verified.previous_hash is not None
            and hmac.compare_digest(presented_hash, verified.previous_hash)
            and self._clock() < verified.previous_until
        ):
            raise _invalid_key()
        if verified.revoked:
            raise KeyRefused(verified.key, "This API key has been revoked.", "key_revoked")
        now = self._clock()
        expires_at = verified.key.expires_at
        if expires_at is not None and expires_at <= now:
            raise KeyRefused(verified.key, "This API key has expired.", "key_expired")
        self._used[key_id] = now
        return verified.key

    async def _lookup(self, key_id: str) -> _Verified | None:
        unknown_until = self._unknown.get(key_id)
        if unknown_until is not None and unknown_until > time.monotonic():
            return None
        task = self._loading.get(key_id)
        if task is None:
            # One query per id however many requests miss the cache at once.
            task = asyncio.create_task(self._load(key_id))
            self._loading[key_id] = task
            task.add_done_callback(lambda done: self._loaded(key_id, done))
        return await asyncio.shield(task)

    def _loaded(self, key_id: str, task: asyncio.Task[_Verified | None]) -> None:
        if self._loading.get(key_id) is task:
            del self._loading[key_id]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice

    async def _load(self, key_id: str) -> _Verified | None:
        generation = self._generation
        try:
            async with (
                self._lookups,
                asyncio.timeout(_LOOKUP_TIMEOUT),
                self._database.engine.connect() as connection,
            ):
                row = await db_keys.fetch_key(connection, key_id)
                team = None
                if row is not None and row["team_id"] is not None:
                    team = await db_teams.fetch_team(connection, row["team_id"])
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            # A refused connection surfaces as OSError from asyncpg, a hanging one as a timeout.
            self.outage.down(exc, "known keys work from their last known record")
            raise _DatabaseDown from None
        self.outage.up()
        valid_until = time.monotonic() + self._ttl
        # An invalidation that arrived while we were reading may postdate this row.
        cacheable = generation == self._generation
        if row is None:
            if cacheable:
                self._remember_unknown(key_id, time.monotonic() + _NEGATIVE_CACHE_TTL)
            return None
        record = record_from_row(row, self._clock())
        team_models = None if team is None else tuple(json.loads(team["models"] or "[]"))
        models, restricted = allowed_models(record.models, team_models)
        previous_until = record.previous_valid_until
        verified = _Verified(
            key=ClientKey(
                id=record.id,
                name=record.name,
                models=models,
                expires_at=None if record.expires_at is None else record.expires_at.timestamp(),
                limits=record.limits,
                team_id=None if team is None else team["id"],
                team_limits=NO_LIMITS if team is None else Limits.from_mapping(team),
                restricted=restricted,
                priority=record.priority,
            ),
            secret_hash=row["secret_hash"],
            revoked=record.revoked_at is not None,
            valid_until=valid_until,
            previous_hash=row["previous_secret_hash"],
            previous_until=0.0 if previous_until is None else previous_until.timestamp(),
        )
        if cacheable:
            # Kept even past its TTL (then only as the last known record, for outages).
            self._cache[key_id] = verified
        return verified

    def _remember_unknown(self, key_id: str, until: float) -> None:
        if len(self._unknown) >= _NEGATIVE_CACHE_SIZE:
            now = time.monotonic()
            self._unknown = {k: t for k, t in self._unknown.items() if t > now}
            while len(self._unknown) >= _NEGATIVE_CACHE_SIZE:
                del self._unknown[next(iter(self._unknown))]
        self._unknown[key_id] = until

    # --- invalidation -------------------------------------------------------------------

    def invalidate(self, key_id: str, change: str = CHANGED) -> None:
        """Drop what this worker knows about one key: it is read again at its next use.

        A revocation or deletion applies at once, even when the database cannot be read;
        after another change the old record stays, as the last known one, for outages.
        EVERY_KEY drops what is known of every key.
        """
        if key_id == EVERY_KEY:
            self.invalidate_all()
            return
        self._generation += 1
        self._unknown.pop(key_id, None)
        verified = self._cache.get(key_id)
        if change == DELETED:
            self._cache.pop(key_id, None)
            self._remember_unknown(key_id, time.monotonic() + _NEGATIVE_CACHE_TTL)
        elif verified is not None:
            revoked = verified.revoked or change == REVOKED
            self._cache[key_id] = replace(verified, revoked=revoked, valid_until=0.0)

    async def team_changed(self) -> None:
        """A team changed: every worker reads its keys again (teams change rarely)."""
        await self._changed(EVERY_KEY)

    def invalidate_all(self) -> None:
        """Read every key again at its next use (the old records stay for outages)."""
        self._generation += 1
        self._cache = {key_id: replace(v, valid_until=0.0) for key_id, v in self._cache.items()}
        self._unknown.clear()

    async def _changed(self, key_id: str, change: str = CHANGED) -> None:
        self.invalidate(key_id, change)
        if self._invalidations is not None:
            await self._invalidations.publish(f"{key_id}:{change}")

    async def _listen(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=30.0)
            except (RedisError, OSError):
                # Messages may have been lost while disconnected: trust nothing cached.
                log.warning("lost the key invalidation channel; reconnecting")
                self.invalidate_all()
                await asyncio.sleep(1.0)
                continue
            if message is None:
                continue
            if message["type"] == "message":
                data = message["data"]
                text = data.decode() if isinstance(data, bytes) else str(data)
                key_id, _, change = text.partition(":")
                self.invalidate(key_id, change or CHANGED)
            elif message["type"] == "subscribe":
                self.invalidate_all()

    # --- last use, written in batches off the hot path --------------------------------------

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.gateway_key_touch_interval)
            await self._flush_used()

    async def _flush_used(self) -> None:
        if not self._used:
            return
        used, self._used = self._used, {}
        stamps = {key_id: datetime.fromtimestamp(ts, UTC) for key_id, ts in used.items()}
        try:
            async with (
                asyncio.timeout(_LOOKUP_TIMEOUT),
                self._database.engine.begin() as connection,
            ):
                await db_keys.touch_keys(connection, stamps)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            # Last use is a convenience: dropped, not retried, while the database is away.
            self.outage.down(exc, "known keys work from their last known record")

    # --- administration -----------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        email: str | None = None,
        models: Any = (),
        expires_at: datetime | None = None,
        team_id: str | None = None,
        priority: str = "normal",
        actor: Actor = SYSTEM,
        **limits: float | None,
    ) -> CreatedKey:
        """Create a key; the returned CreatedKey holds the full key, shown only this once.

        A limit not given is unlimited, except `daily_requests`, which then takes
        GATEWAY_DEFAULT_DAILY_REQUESTS (give None for unlimited).
        """
        values: dict[str, Any] = dict.fromkeys(LIMIT_NAMES)
        values["daily_requests"] = self._settings.gateway_default_daily_requests
        values.update(limits)
        now = self._clock()
        fields = {
            "name": name,
            "email": email,
            "models": models,
            "expires_at": expires_at,
            "priority": priority,
        }
        columns = validate_fields({**fields, **values, "team_id": team_id}, now)
        for _attempt in range(3):
            key_id, secret, full_key = new_key()
            row = {
                **columns,
                "id": key_id,
                "prefix": display_prefix(key_id),
                "secret_hash": hash_secret(secret),
                "created_at": datetime.fromtimestamp(now, UTC),
                "last_used_at": None,
                "revoked_at": None,
            }
            record = record_from_row(row, now)
            try:
                async with self._database.engine.begin() as connection:
                    await _check_team(connection, columns.get("team_id"))
                    await db_keys.insert_key(connection, row)
                    await audit.record(
                        connection,
                        actor,
                        now,
                        "key.create",
                        "key",
                        key_id,
                        after=record.to_json(),
                    )
            except IntegrityError:
                continue  # an id collision: astronomically rare, just draw again
            self.invalidate(key_id)
            log.info("created API key %s", key_id)
            return CreatedKey(id=key_id, key=full_key, record=record)
        raise GatewayError(500, "could not allocate a key id", "internal_error")

    async def list_keys(
        self,
        *,
        status: str | None = None,
        query: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        team_ids: list[str] | None = None,
        sort: str = "created_at",
        descending: bool = True,
    ) -> list[KeyRecord]:
        """Keys, newest first unless sorted otherwise, filtered by status, a search and teams."""
        self._check_status(status)
        if sort not in db_keys.SORTS:
            raise GatewayError(
                400,
                f"sort must be one of {', '.join(db_keys.SORTS)}",
                "invalid_request",
                param="sort",
            )
        now = self._clock()
        async with self._database.engine.connect() as connection:
            rows = await db_keys.fetch_keys(
                connection,
                now=datetime.fromtimestamp(now, UTC),
                status=status,
                query=query,
                limit=limit,
                offset=offset,
                team_ids=team_ids,
                sort=sort,
                descending=descending,
            )
        return [record_from_row(row, now) for row in rows]

    async def count_keys(
        self,
        *,
        status: str | None = None,
        query: str | None = None,
        team_ids: list[str] | None = None,
    ) -> int:
        """How many keys match the filters of list_keys."""
        self._check_status(status)
        async with self._database.engine.connect() as connection:
            return await db_keys.count_keys(
                connection,
                now=datetime.fromtimestamp(self._clock(), UTC),
                status=status,
                query=query,
                team_ids=team_ids,
            )

    @staticmethod
    def _check_status(status: str | None) -> None:
        if status is not None and status not in db_keys.STATUSES:
            raise GatewayError(
                400, "status must be active, revoked or expired", "invalid_request", param="status"
            )

    async def get(self, key_id: str) -> KeyRecord:
        """One key, or a 404 GatewayError."""
        async with self._database.engine.connect() as connection:
            row = await db_keys.fetch_key(connection, key_id)
        if row is None:
            raise _not_found(key_id)
        return record_from_row(row, self._clock())

    async def update(self, key_id: str, *, actor: Actor = SYSTEM, **changes: Any) -> KeyRecord:
        """Change a key's editable fields; takes effect at once in every worker."""
        unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
        if unknown:
            raise GatewayError(
                400, f"unknown field {unknown[0]!r}", "invalid_request", param=unknown[0]
            )
        now = self._clock()
        columns = validate_fields(changes, now)
        if columns:
            before = await self.get(key_id)
            async with self._database.engine.begin() as connection:
                if "team_id" in columns:
                    await _check_team(connection, columns["team_id"])
                found = await db_keys.update_key(connection, key_id, columns)
                if not found:
                    raise _not_found(key_id)
                row = await db_keys.fetch_key(connection, key_id)
                assert row is not None
                await audit.record(
                    connection,
                    actor,
                    now,
                    "key.update",
                    "key",
                    key_id,
                    before=before.to_json(),
                    after=record_from_row(row, now).to_json(),
                )
            await self._changed(key_id)
            log.info("updated API key %s (%s)", key_id, ", ".join(sorted(columns)))
        return await self.get(key_id)

    async def rotate(self, key_id: str, overlap: timedelta, *, actor: Actor = SYSTEM) -> CreatedKey:
        """A new secret for the same key id (same limits, team and history).

        The secret it replaces keeps working for `overlap` (zero: it stops at once); a
        secret from an earlier rotation stops now.
        """
        if overlap < timedelta(0) or overlap > timedelta(days=365):
            raise GatewayError(
                400, "overlap must be between 0 and 365 days", "invalid_request", param="overlap"
            )
        now = self._clock()
        before = await self.get(key_id)
        if before.status == "revoked":
            raise GatewayError(
                409, f"API key {key_id!r} is revoked: it cannot be rotated.", "conflict"
            )
        async with self._database.engine.connect() as connection:
            row = await db_keys.fetch_key(connection, key_id)
        if row is None:
            raise _not_found(key_id)
        secret, full_key = new_secret(key_id)
        until = datetime.fromtimestamp(now, UTC) + overlap
        columns = {
            "secret_hash": hash_secret(secret),
            "previous_secret_hash": row["secret_hash"] if overlap else None,
            "previous_valid_until": until if overlap else None,
        }
        async with self._database.engine.begin() as connection:
            if not await db_keys.update_key(connection, key_id, columns):
                raise _not_found(key_id)
            fresh = await db_keys.fetch_key(connection, key_id)
            assert fresh is not None
            record = record_from_row(fresh, now)
            await audit.record(
                connection,
                actor,
                now,
                "key.rotate",
                "key",
                key_id,
                before=before.to_json(),
                after=record.to_json(),
            )
        await self._changed(key_id)
        log.info("rotated API key %s (old secret valid for %s)", key_id, overlap)
        return CreatedKey(id=key_id, key=full_key, record=record)

    async def revoke(self, key_id: str, *, actor: Actor = SYSTEM) -> KeyRecord:
        """Revoke a key (its usage history stays); takes effect at once in every worker."""
        now = self._clock()
        before = await self.get(key_id)
        async with self._database.engine.begin() as connection:
            await db_keys.revoke_key(connection, key_id, datetime.fromtimestamp(now, UTC))
            row = await db_keys.fetch_key(connection, key_id)
            if row is None:
                raise _not_found(key_id)
            record = record_from_row(row, now)
            await audit.record(
                connection,
                actor,
                now,
                "key.revoke",
                "key",
                key_id,
                before=before.to_json(),
                after=record.to_json(),
            )
        await self._changed(key_id, REVOKED)
        log.info("revoked API key %s", key_id)
        return record

    async def delete(self, key_id: str, *, actor: Actor = SYSTEM) -> KeyRecord:
        """Delete a key and its usage history; returns what was deleted."""
        async with self._database.engine.connect() as connection:
            row = await db_keys.fetch_key(connection, key_id)
        if row is None:
            raise _not_found(key_id)
        now = self._clock()
        record = record_from_row(row, now)
        # A write transaction that starts with a write: SQLite takes its lock up front.
        async with self._database.engine.begin() as connection:
            if not await db_keys.delete_key(connection, key_id):
                raise _not_found(key_id)
            await audit.record(
                connection, actor, now, "key.delete", "key", key_id, before=record.to_json()
            )
        await self._changed(key_id, DELETED)
        log.info("deleted API key %s and its usage", key_id)
        return record


async def _check_team(connection: Any, team_id: str | None) -> None:
    if team_id is not None and await db_teams.fetch_team(connection, team_id) is None:
        raise GatewayError(400, f"No team with id {team_id!r}.", "invalid_request", param="team_id")


def _not_found(key_id: str) -> GatewayError:
    return GatewayError(404, f"No API key with id {key_id!r}.", "not_found", param="id")
