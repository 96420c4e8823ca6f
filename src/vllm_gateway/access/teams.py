"""Teams: a name, the limits a key may have, a model allowlist and budgets, shared by keys.

A key belongs to at most one team. Its team's limits are a second subject of the same
atomic limiter call as the key's own (see ClientKey.subjects), and it may use only the
models both allow. A change to a team reaches every worker's key cache at once through
the same Redis invalidation channel as key changes (KeyStore.team_changed).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from vllm_gateway.access.key_records import as_utc, iso_time, validate_fields
from vllm_gateway.access.keys import KeyStore
from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import SYSTEM, Actor
from vllm_gateway.clock import Clock
from vllm_gateway.db import teams as db_teams
from vllm_gateway.db.engine import Database
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.model import LIMIT_NAMES, Limits

log = logging.getLogger(__name__)

TEAM_FIELDS = ("name", *LIMIT_NAMES, "models")


@dataclass(frozen=True, slots=True)
class TeamRecord:
    """A stored team as admins see it."""

    id: str
    name: str
    models: tuple[str, ...]
    limits: Limits
    created_at: datetime
    updated_at: datetime
    key_count: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with ISO 8601 times."""
        return {
            "id": self.id,
            "name": self.name,
            "models": list(self.models),
            **self.limits.to_json(),
            "key_count": self.key_count,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
        }


def team_from_row(row: Mapping[Any, Any]) -> TeamRecord:
    """A TeamRecord from a teams row (with key_count when the query counted keys)."""
    created_at, updated_at = as_utc(row["created_at"]), as_utc(row["updated_at"])
    assert created_at is not None and updated_at is not None
    return TeamRecord(
        id=row["id"],
        name=row["name"],
        models=tuple(json.loads(row["models"] or "[]")),
        limits=Limits.from_mapping(row),
        created_at=created_at,
        updated_at=updated_at,
        key_count=int(row.get("key_count") or 0),
    )


def _not_found(team_id: str) -> GatewayError:
    return GatewayError(404, f"No team with id {team_id!r}.", "not_found", param="id")


def _taken(name: str) -> GatewayError:
    return GatewayError(409, f"A team named {name!r} exists already.", "conflict", param="name")


def _check_fields(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - set(TEAM_FIELDS))
    if unknown:
        raise GatewayError(
            400, f"unknown field {unknown[0]!r}", "invalid_request", param=unknown[0]
        )


class TeamStore:
    """Creates, reads, changes and deletes teams; every change is audited."""

    def __init__(self, database: Database, clock: Clock, keys: KeyStore) -> None:
        self._database = database
        self._clock = clock
        self._keys = keys

    async def create(self, *, actor: Actor = SYSTEM, **fields: Any) -> TeamRecord:
        """A new team; limits not given are unlimited."""
        _check_fields(fields)
        values: dict[str, Any] = {**dict.fromkeys(LIMIT_NAMES), "models": [], **fields}
        if "name" not in values:
            raise GatewayError(400, "name is required", "invalid_request", param="name")
        now = self._clock()
        columns = validate_fields(values, now)
        stamp = datetime.fromtimestamp(now, UTC)
        row = {
            **columns,
            "id": "team-" + secrets.token_hex(6),
            "created_at": stamp,
            "updated_at": stamp,
        }
        record = team_from_row(row)
        try:
            async with self._database.engine.begin() as connection:
                await db_teams.insert_team(connection, row)
                await audit.record(
                    connection,
                    actor,
                    now,
                    "team.create",
                    "team",
                    record.id,
                    after=record.to_json(),
                )
        except IntegrityError:
            raise _taken(columns["name"]) from None
        log.info("created team %s (%s)", record.id, record.name)
        return record

    async def list_teams(self, ids: list[str] | None = None) -> list[TeamRecord]:
        """Teams by name (only `ids`, when given)."""
        async with self._database.engine.connect() as connection:
            rows = await db_teams.fetch_teams(connection, ids=ids)
        return [team_from_row(row) for row in rows]

    async def get(self, team_id: str) -> TeamRecord:
        """One team, or a 404."""
        found = await self.list_teams([team_id])
        if not found:
            raise _not_found(team_id)
        return found[0]

    async def exists(self, team_id: str) -> bool:
        """Whether a team with this id exists."""
        async with self._database.engine.connect() as connection:
            return await db_teams.fetch_team(connection, team_id) is not None

    async def update(self, team_id: str, *, actor: Actor = SYSTEM, **changes: Any) -> TeamRecord:
        """Change the fields given; every worker sees it at once (Redis) or within the TTL."""
        _check_fields(changes)
        now = self._clock()
        columns = validate_fields(changes, now)
        before = await self.get(team_id)
        if columns:
            columns["updated_at"] = datetime.fromtimestamp(now, UTC)
            try:
                async with self._database.engine.begin() as connection:
                    if not await db_teams.update_team(connection, team_id, columns):
                        raise _not_found(team_id)
                    row = await db_teams.fetch_team(connection, team_id)
                    assert row is not None
                    after = team_from_row(row)
                    await audit.record(
                        connection,
                        actor,
                        now,
                        "team.update",
                        "team",
                        team_id,
                        before=before.to_json(),
                        after=after.to_json(),
                    )
            except IntegrityError:
                raise _taken(str(columns.get("name"))) from None
            await self._keys.team_changed()
            log.info("updated team %s (%s)", team_id, ", ".join(sorted(columns)))
        return await self.get(team_id)

    async def delete(self, team_id: str, *, actor: Actor = SYSTEM) -> TeamRecord:
        """Delete a team; its keys stay, outside any team."""
        before = await self.get(team_id)
        async with self._database.engine.begin() as connection:
            if not await db_teams.delete_team(connection, team_id):
                raise _not_found(team_id)
            await audit.record(
                connection,
                actor,
                self._clock(),
                "team.delete",
                "team",
                team_id,
                before=before.to_json(),
            )
        await self._keys.team_changed()
        log.info("deleted team %s", team_id)
        return before
