"""The admin identity: configured key, generated key printed once, argon2 storage, reset."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from vllm_gateway.access.admin_identity import AdminIdentity
from vllm_gateway.db import admin as db_admin
from vllm_gateway.db.engine import Database, open_database
from vllm_gateway.db.tables import admin_credentials, admin_sessions
from vllm_gateway.settings import Settings

ADMIN_KEY = re.compile(r"vgw-admin-[A-Za-z0-9_-]{40,}")


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(_env_file=None, database_url=url, **overrides)  # type: ignore[call-arg]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = await open_database(settings_for(database_url))
    try:
        yield db
    finally:
        await db.close()


async def stored_hashes(database: Database) -> list[str]:
    async with database.engine.connect() as connection:
        result = await connection.execute(select(admin_credentials.c.key_hash))
        return [str(value) for value in result.scalars().all()]


async def test_a_generated_key_is_printed_once_and_stored_as_argon2(
    database: Database,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(database_url)
    identity = AdminIdentity(database, settings)
    await identity.start()
    printed = capsys.readouterr()
    (key,) = ADMIN_KEY.findall(printed.err)
    assert key not in printed.out and key not in caplog.text
    (stored,) = await stored_hashes(database)
    assert stored.startswith("$argon2") and key not in stored
    assert await identity.verify(key)
    assert await identity.verify(key)  # the cheap, cached path
    assert not await identity.verify(key + "x")
    assert not await identity.verify("")

    restarted = AdminIdentity(database, settings)
    await restarted.start()
    assert not ADMIN_KEY.findall(capsys.readouterr().err)  # shown only the first time
    assert await restarted.verify(key)


async def test_workers_starting_together_agree_on_one_key(
    database: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(database_url)
    identities = [AdminIdentity(database, settings) for _ in range(3)]
    await asyncio.gather(*(identity.start() for identity in identities))
    (key,) = ADMIN_KEY.findall(capsys.readouterr().err)
    assert len(await stored_hashes(database)) == 1
    for identity in identities:
        assert await identity.verify(key)


async def test_the_configured_key_wins_and_nothing_is_generated(
    database: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = AdminIdentity(database, settings_for(database_url, gateway_admin_key="configured"))
    await identity.start()
    assert capsys.readouterr().err == ""
    (stored,) = await stored_hashes(database)  # its argon2 hash marks the sessions' generation
    assert stored.startswith("$argon2") and "configured" not in stored
    assert await identity.verify("configured")
    assert not await identity.verify("configured ")
    assert not await identity.verify("other")


async def test_a_changed_configured_key_ends_every_session(
    database: Database, database_url: str
) -> None:
    now = datetime.now(UTC)
    settings = settings_for(database_url, gateway_admin_key="first")
    await AdminIdentity(database, settings).start()
    async with database.engine.begin() as connection:
        await db_admin.insert_session(
            connection,
            id_hash="a" * 64,
            csrf_token="c",
            created_at=now,
            expires_at=now + timedelta(hours=1),
        )
    await AdminIdentity(database, settings).start()  # the same key: sessions live on
    assert await session_count(database) == 1
    await AdminIdentity(database, settings_for(database_url, gateway_admin_key="second")).start()
    assert await session_count(database) == 0


async def session_count(database: Database) -> int:
    async with database.engine.connect() as connection:
        rows = (await connection.execute(select(admin_sessions.c.id_hash))).all()
    return len(rows)


async def test_reset_replaces_the_key(
    database: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = AdminIdentity(database, settings_for(database_url))
    await identity.start()
    (old,) = ADMIN_KEY.findall(capsys.readouterr().err)
    assert await identity.verify(old)
    new = await identity.reset()
    assert ADMIN_KEY.fullmatch(new) and new != old
    assert await identity.verify(new)
    assert not await identity.verify(old)
    (stored,) = await stored_hashes(database)
    assert new not in stored
    # A worker that starts afterwards knows only the new key.
    other = AdminIdentity(database, settings_for(database_url))
    await other.start()
    assert await other.verify(new) and not await other.verify(old)
