"""Admin accounts: a username, a role, a password (argon2) or single sign-on, their teams.

Passwords are hashed with argon2 in a thread, at most two at a time (each costs 64 MiB
for a moment). A disabled account, or one whose role changed, loses its sessions at once.
Every change is audited (never the password or its hash).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError

from vllm_gateway.access.key_records import as_utc, iso_time
from vllm_gateway.access.roles import ROLES, SCOPED
from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import SYSTEM, Actor
from vllm_gateway.clock import Clock
from vllm_gateway.db import admin_users as db_users
from vllm_gateway.db import teams as db_teams
from vllm_gateway.db.engine import Database
from vllm_gateway.errors import GatewayError

_USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{1,200}$")
_MIN_PASSWORD = 12
_MAX_PASSWORD = 1024
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the username is unknown, so timing does not tell which accounts exist."""
    return _HASHER.hash("not a password of anyone")


@dataclass(frozen=True, slots=True)
class AdminUser:
    """An admin account as the API shows it (never its password hash)."""

    id: int
    username: str
    role: str
    team_ids: tuple[str, ...]
    sso: bool  # signs in through the OIDC provider (linked, or without a password)
    has_password: bool
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the account may sign in."""
        return self.disabled_at is None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "team_ids": list(self.team_ids),
            "sso": self.sso,
            "has_password": self.has_password,
            "status": "active" if self.active else "disabled",
            "created_at": iso_time(self.created_at),
            "disabled_at": iso_time(self.disabled_at),
        }


def user_from_row(row: Mapping[Any, Any]) -> AdminUser:
    """An AdminUser from an admin_users row."""
    created_at = as_utc(row["created_at"])
    assert created_at is not None
    return AdminUser(
        id=int(row["id"]),
        username=row["username"],
        role=row["role"],
        team_ids=tuple(json.loads(row["team_ids"] or "[]")),
        sso=row["oidc_subject"] is not None or row["password_hash"] is None,
        has_password=row["password_hash"] is not None,
        created_at=created_at,
        disabled_at=as_utc(row["disabled_at"]),
    )


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, message, "invalid_request", param=param)


def _username(value: Any) -> str:
    if not isinstance(value, str) or not _USERNAME.match(value):
        raise _bad("username", "username must be 1-200 letters, digits or ._@+-")
    return value


def _role(value: Any) -> str:
    if value not in ROLES:
        raise _bad("role", f"role must be one of {', '.join(ROLES)}")
    return str(value)


def _password(value: Any) -> str:
    if not isinstance(value, str) or not _MIN_PASSWORD <= len(value) <= _MAX_PASSWORD:
        raise _bad("password", f"password must be {_MIN_PASSWORD}-{_MAX_PASSWORD} characters")
    return value


def _not_found(user: str) -> GatewayError:
    return GatewayError(404, f"No admin account {user!r}.", "not_found", param="username")


class AdminUserStore:
    """Creates and changes admin accounts and checks their passwords."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock
        self._argon2 = asyncio.Semaphore(2)

    async def _hash(self, password: str) -> str:
        async with self._argon2:
            return await asyncio.to_thread(_HASHER.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        def check() -> bool:
            try:
                return _HASHER.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return False

        async with self._argon2:
            return await asyncio.to_thread(check)

    async def _check_teams(self, connection: Any, role: str, team_ids: Any) -> list[str]:
        if team_ids is None:
            team_ids = []
        if not isinstance(team_ids, list | tuple) or not all(
            isinstance(team, str) for team in team_ids
        ):
            raise _bad("team_ids", "team_ids must be a list of team ids")
        if role in SCOPED and not team_ids:
            raise _bad("team_ids", "a team_manager needs at least one team")
        for team in team_ids:
            if await db_teams.fetch_team(connection, team) is None:
                raise _bad("team_ids", f"No team with id {team!r}.")
        return sorted(set(team_ids))

    async def create(
        self,
        username: Any,
        role: Any,
        *,
        password: Any = None,
        team_ids: Any = None,
        oidc_subject: str | None = None,
        actor: Actor = SYSTEM,
    ) -> AdminUser:
        """A new account; without a password it can only sign in through the OIDC provider."""
        name, chosen = _username(username), _role(role)
        password_hash = None if password is None else await self._hash(_password(password))
        now = self._clock()
        try:
            async with self._database.engine.begin() as connection:
                teams = await self._check_teams(connection, chosen, team_ids)
                row = {
                    "username": name,
                    "password_hash": password_hash,
                    "role": chosen,
                    "team_ids": json.dumps(teams),
                    "oidc_subject": oidc_subject,
                    "created_at": datetime.fromtimestamp(now, UTC),
                    "disabled_at": None,
                }
                user_id = await db_users.insert_user(connection, row)
                user = user_from_row({**row, "id": user_id})
                await audit.record(
                    connection, actor, now, "user.create", "user", name, after=user.to_json()
                )
        except IntegrityError:
            raise GatewayError(
                409, f"An admin account {name!r} exists already.", "conflict", param="username"
            ) from None
        return user

    async def list_users(self) -> list[AdminUser]:
        """Every account by username."""
        async with self._database.engine.connect() as connection:
            return [user_from_row(row) for row in await db_users.fetch_users(connection)]

    async def get(self, user_id: int) -> AdminUser | None:
        """One account by id."""
        async with self._database.engine.connect() as connection:
            row = await db_users.fetch_user(connection, user_id=user_id)
        return None if row is None else user_from_row(row)

    async def by_name(self, username: str) -> AdminUser:
        """One account by username, or a 404."""
        async with self._database.engine.connect() as connection:
            row = await db_users.fetch_user(connection, username=username)
        if row is None:
            raise _not_found(username)
        return user_from_row(row)

    async def by_subject(self, subject: str) -> AdminUser | None:
        """The account linked to a single sign-on subject."""
        async with self._database.engine.connect() as connection:
            row = await db_users.fetch_user(connection, oidc_subject=subject)
        return None if row is None else user_from_row(row)

    async def authenticate(self, username: str, password: str) -> AdminUser | None:
        """The active account with this password, or None (same cost either way)."""
        async with self._database.engine.connect() as connection:
            row = await db_users.fetch_user(connection, username=username[:200])
        stored = None if row is None else row["password_hash"]
        ok = await self._verify(stored or _dummy_hash(), password[:_MAX_PASSWORD])
        if row is None or stored is None or not ok:
            return None
        user = user_from_row(row)
        return user if user.active else None

    async def _change(
        self, username: str, action: str, values: dict[str, Any], actor: Actor
    ) -> AdminUser:
        before = await self.by_name(username)
        now = self._clock()
        async with self._database.engine.begin() as connection:
            if "role" in values or "team_ids" in values:
                role = values.get("role", before.role)
                teams = values.get("team_ids", list(before.team_ids))
                values["team_ids"] = json.dumps(await self._check_teams(connection, role, teams))
            await db_users.update_user(connection, before.id, values)
            await db_users.end_sessions(connection, before.id)
            row = await db_users.fetch_user(connection, user_id=before.id)
            assert row is not None
            after = user_from_row(row)
            await audit.record(
                connection,
                actor,
                now,
                action,
                "user",
                username,
                before=before.to_json(),
                after=after.to_json(),
            )
        return after

    async def link_subject(
        self, username: str, subject: str, *, actor: Actor = SYSTEM
    ) -> AdminUser:
        """Tie a password-less account to its single sign-on subject (at its first login)."""
        return await self._change(username, "user.link_sso", {"oidc_subject": subject}, actor)

    async def set_role(
        self, username: str, role: Any, *, team_ids: Any = None, actor: Actor = SYSTEM
    ) -> AdminUser:
        """Give an account another role (and teams, for a team_manager); ends its sessions."""
        values: dict[str, Any] = {"role": _role(role)}
        if team_ids is not None:
            values["team_ids"] = team_ids
        elif role not in SCOPED:
            values["team_ids"] = []
        return await self._change(username, "user.set_role", values, actor)

    async def disable(self, username: str, *, actor: Actor = SYSTEM) -> AdminUser:
        """Stop an account from signing in; ends its sessions."""
        stamp = datetime.fromtimestamp(self._clock(), UTC)
        return await self._change(username, "user.disable", {"disabled_at": stamp}, actor)

    async def enable(self, username: str, *, actor: Actor = SYSTEM) -> AdminUser:
        """Let a disabled account sign in again."""
        return await self._change(username, "user.enable", {"disabled_at": None}, actor)

    async def set_password(self, username: str, password: Any, *, actor: Actor = SYSTEM) -> None:
        """Replace an account's password; ends its sessions."""
        hashed = await self._hash(_password(password))
        await self._change(username, "user.set_password", {"password_hash": hashed}, actor)
