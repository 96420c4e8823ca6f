"""The key store against real SQLite and PostgreSQL: format, hashing, cache, admin operations."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
from sqlalchemy import func, insert, select

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import client_for
from tests.support.databases import PostgresDatabase
from vllm_gateway.access.key_format import KEY_LENGTH, parse_key
from vllm_gateway.access.keys import KeyStore
from vllm_gateway.db.engine import Database, open_database
from vllm_gateway.db.tables import api_keys, usage_daily, usage_events
from vllm_gateway.errors import GatewayError
from vllm_gateway.resp.client import RedisClient
from vllm_gateway.settings import Settings

CHAT = [{"role": "user", "content": "hello"}]


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": url, "gateway_key_cache_ttl": 3600.0}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = await open_database(make_settings(database_url))
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(
    database: Database, database_url: str, clock: ManualClock
) -> AsyncIterator[KeyStore]:
    keys = KeyStore(database, clock, make_settings(database_url), None)
    await keys.start()
    try:
        yield keys
    finally:
        await keys.close()


async def raw_rows(database: Database) -> list[dict[str, Any]]:
    async with database.engine.connect() as connection:
        result = await connection.execute(select(api_keys))
        return [dict(row) for row in result.mappings().all()]


async def count_keys(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(api_keys))).scalar_one()
        )


async def rejects(store: KeyStore, presented: str | None) -> tuple[int, str]:
    with pytest.raises(GatewayError) as raised:
        await store.authenticate(presented)
    return raised.value.status, raised.value.code


async def test_a_created_key_authenticates_and_is_stored_only_hashed(
    store: KeyStore, database: Database
) -> None:
    created = await store.create(name="alpha", email="a@example.com", rpm=5, models=["m1"])
    assert created.key.startswith("vgw-") and len(created.key) == KEY_LENGTH
    assert parse_key(created.key) == (created.id, created.key[4 + len(created.id) :])
    key = await store.authenticate(created.key)
    assert (key.id, key.name, key.limits.rpm, key.models) == (
        created.id,
        "alpha",
        5,
        frozenset({"m1"}),
    )
    (row,) = await raw_rows(database)
    secret = created.key[4 + len(created.id) :]
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for value in row.values():
        assert created.key not in str(value) and secret not in str(value)
    assert created.record.prefix == row["prefix"] and secret[:6] not in row["prefix"]


async def test_every_key_is_different(store: KeyStore) -> None:
    keys = {(await store.create(name=f"k{i}")).key for i in range(20)}
    assert len(keys) == 20


@pytest.mark.parametrize(
    "presented",
    [None, "", "sk-something", "vgw-", "vgw-" + "a" * 44, "vgw-" + "A" * 44, "vgw-" + "é" * 44],
)
async def test_malformed_and_unknown_keys_are_401(store: KeyStore, presented: str | None) -> None:
    assert await rejects(store, presented) == (401, "invalid_api_key")


async def test_a_wrong_secret_is_401_even_for_a_revoked_key(store: KeyStore) -> None:
    created = await store.create(name="alpha")
    wrong = created.key[:-1] + ("a" if created.key[-1] != "a" else "b")
    assert await rejects(store, wrong) == (401, "invalid_api_key")
    await store.revoke(created.id)
    # The status of a key is not revealed to someone who only knows its public id.
    assert await rejects(store, wrong) == (401, "invalid_api_key")
    assert await rejects(store, created.key) == (403, "key_revoked")


async def test_revocation_takes_effect_at_once_despite_the_cache(store: KeyStore) -> None:
    created = await store.create(name="alpha")
    await store.authenticate(created.key)  # now cached for an hour
    record = await store.revoke(created.id)
    assert record.status == "revoked" and record.revoked_at is not None
    assert await rejects(store, created.key) == (403, "key_revoked")


async def test_updates_take_effect_at_once_despite_the_cache(store: KeyStore) -> None:
    created = await store.create(name="alpha", models=["m1"])
    assert (await store.authenticate(created.key)).models == frozenset({"m1"})
    record = await store.update(created.id, models=[], rpm=7, name="beta")
    assert (record.name, record.limits.rpm, record.models) == ("beta", 7, ())
    key = await store.authenticate(created.key)
    assert (key.name, key.limits.rpm, key.models) == ("beta", 7, frozenset())


async def test_a_deleted_key_is_401(store: KeyStore) -> None:
    created = await store.create(name="alpha")
    await store.authenticate(created.key)
    await store.delete(created.id)
    assert await rejects(store, created.key) == (401, "invalid_api_key")


async def test_expiry_is_checked_against_the_clock(store: KeyStore, clock: ManualClock) -> None:
    expires = datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1)
    created = await store.create(name="alpha", expires_at=expires)
    assert (await store.authenticate(created.key)).expires_at == expires.timestamp()
    clock.now += 3601
    assert await rejects(store, created.key) == (403, "key_expired")
    assert (await store.get(created.id)).status == "expired"


async def test_the_default_daily_limit_comes_from_settings(
    database: Database, database_url: str
) -> None:
    settings = make_settings(database_url, gateway_default_daily_requests=42)
    store = KeyStore(database, time.time, settings, None)
    assert (await store.create(name="default")).record.limits.daily_requests == 42
    assert (
        await store.create(name="unlimited", daily_requests=None)
    ).record.limits.daily_requests is None
    assert (await store.create(name="set", daily_requests=7)).record.limits.daily_requests == 7


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "x" * 300}, "name"),
        ({"name": "line\nbreak"}, "name"),
        ({"name": "ok", "rpm": -1}, "rpm"),
        ({"name": "ok", "daily_requests": -5}, "daily_requests"),
        ({"name": "ok", "daily_tokens": -1}, "daily_tokens"),
        ({"name": "ok", "max_concurrency": 0}, "max_concurrency"),
        ({"name": "ok", "rpm": 2**31}, "rpm"),
        ({"name": "ok", "rpm": True}, "rpm"),
        ({"name": "ok", "models": "m1"}, "models"),
        ({"name": "ok", "models": ["m1", ""]}, "models"),
        ({"name": "ok", "models": [3]}, "models"),
        ({"name": "ok", "email": "not-an-address"}, "email"),
        ({"name": "ok", "expires_at": datetime(2001, 1, 1, tzinfo=UTC)}, "expires_at"),
    ],
)
async def test_bad_fields_are_400_and_write_nothing(
    store: KeyStore, database: Database, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(GatewayError) as raised:
        await store.create(**fields)
    assert (raised.value.status, raised.value.param) == (400, param)
    assert await count_keys(database) == 0


async def test_bad_updates_are_400_and_change_nothing(store: KeyStore) -> None:
    created = await store.create(name="alpha", rpm=5)
    for changes in ({"rpm": -1}, {"name": "x" * 300}, {"secret_hash": "0" * 64}, {"bogus": 1}):
        with pytest.raises(GatewayError) as raised:
            await store.update(created.id, **changes)
        assert raised.value.status == 400
    assert await store.get(created.id) == created.record


async def test_unknown_ids_are_404(store: KeyStore) -> None:
    for operation in (store.get, store.revoke, store.delete):
        with pytest.raises(GatewayError) as raised:
            await operation("nosuchkey")
        assert (raised.value.status, raised.value.code) == (404, "not_found")
    with pytest.raises(GatewayError) as raised:
        await store.update("nosuchkey", rpm=3)
    assert raised.value.status == 404


async def test_list_filters_by_status_and_search(store: KeyStore, clock: ManualClock) -> None:
    active = await store.create(name="Alpha team", email="alpha@example.com")
    revoked = await store.create(name="beta")
    await store.revoke(revoked.id)
    soon = datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=10)
    expired = await store.create(name="gamma_100%", expires_at=soon)
    clock.now += 60

    def ids(records: list[Any]) -> set[str]:
        return {record.id for record in records}

    assert ids(await store.list_keys()) == {active.id, revoked.id, expired.id}
    assert ids(await store.list_keys(status="active")) == {active.id}
    assert ids(await store.list_keys(status="revoked")) == {revoked.id}
    assert ids(await store.list_keys(status="expired")) == {expired.id}
    assert ids(await store.list_keys(query="ALPHA")) == {active.id}
    assert ids(await store.list_keys(query="example.com")) == {active.id}
    assert ids(await store.list_keys(query="_100%")) == {expired.id}
    assert ids(await store.list_keys(query="%")) == {expired.id}
    assert ids(await store.list_keys(query=revoked.id)) == {revoked.id}
    with pytest.raises(GatewayError):
        await store.list_keys(status="bogus")


async def add_usage(database: Database, key_id: str) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(
            insert(usage_events).values(
                ts=time.time(),
                request_id="r-" + key_id,
                key_id=key_id,
                model="m",
                route="/v1/chat/completions",
                status=200,
                prompt_tokens=1,
                completion_tokens=2,
                latency_ms=3.0,
                ttft_ms=None,
                backend="b",
                stream=False,
            )
        )
        await connection.execute(
            insert(usage_daily).values(
                day="2025-01-01",
                key_id=key_id,
                model="m",
                requests=1,
                errors=0,
                prompt_tokens=1,
                completion_tokens=2,
                latency_ms_sum=3.0,
            )
        )


async def usage_key_ids(database: Database) -> list[str]:
    async with database.engine.connect() as connection:
        events = (await connection.execute(select(usage_events.c.key_id))).scalars().all()
        daily = (await connection.execute(select(usage_daily.c.key_id))).scalars().all()
    return sorted([*events, *daily])


async def test_revoke_keeps_usage_and_delete_removes_only_its_own(
    store: KeyStore, database: Database
) -> None:
    doomed = await store.create(name="doomed")
    kept = await store.create(name="kept")
    await add_usage(database, doomed.id)
    await add_usage(database, kept.id)
    await store.revoke(doomed.id)
    assert await usage_key_ids(database) == sorted([doomed.id] * 2 + [kept.id] * 2)
    deleted = await store.delete(doomed.id)
    assert deleted.id == doomed.id
    assert await usage_key_ids(database) == [kept.id, kept.id]
    assert [row["id"] for row in await raw_rows(database)] == [kept.id]


async def test_last_use_is_recorded_off_the_hot_path(
    database: Database, database_url: str, clock: ManualClock
) -> None:
    store = KeyStore(database, clock, make_settings(database_url), None)
    await store.start()
    created = await store.create(name="alpha")
    await store.authenticate(created.key)
    await store.close()  # writes pending last-use times
    record = await store.get(created.id)
    assert record.last_used_at is not None
    assert abs(record.last_used_at.timestamp() - clock.now) < 1


async def test_last_use_is_written_every_key_touch_interval(
    database: Database, database_url: str, clock: ManualClock
) -> None:
    settings = make_settings(database_url, gateway_key_touch_interval=0.05)
    store = KeyStore(database, clock, settings, None)
    await store.start()
    try:
        created = await store.create(name="alpha")
        await store.authenticate(created.key)
        for _ in range(100):  # no close(): the loop writes it within the interval
            await asyncio.sleep(0.02)
            if (await store.get(created.id)).last_used_at is not None:
                break
        assert (await store.get(created.id)).last_used_at is not None
    finally:
        await store.close()


async def test_concurrent_first_lookups_agree(store: KeyStore) -> None:
    created = await store.create(name="alpha")
    results = await asyncio.gather(*(store.authenticate(created.key) for _ in range(50)))
    assert {key.id for key in results} == {created.id}


async def test_logs_never_hold_a_key(store: KeyStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = await store.create(name="alpha")
    await store.authenticate(created.key)
    await store.update(created.id, rpm=3)
    await store.revoke(created.id)
    await rejects(store, created.key)
    await store.delete(created.id)
    secret = created.key[4 + len(created.id) :]
    assert created.id in caplog.text  # keys are logged by id
    assert secret not in caplog.text and created.key not in caplog.text


async def test_invalidation_reaches_other_stores_through_redis(
    database: Database, database_url: str, redis_url: str
) -> None:
    settings = make_settings(database_url, redis_url=redis_url)
    redis_a = RedisClient.from_url(redis_url)
    redis_b = RedisClient.from_url(redis_url)
    store_a = KeyStore(database, time.time, settings, redis_a)
    store_b = KeyStore(database, time.time, settings, redis_b)
    await store_a.start()
    await store_b.start()
    try:
        created = await store_a.create(name="shared", rpm=1)
        assert (await store_b.authenticate(created.key)).limits.rpm == 1  # cached for an hour in B
        await store_a.update(created.id, rpm=2)
        await store_a.revoke(created.id)
        deadline = time.monotonic() + 5
        while True:
            try:
                await store_b.authenticate(created.key)
            except GatewayError as error:
                assert error.code == "key_revoked"
                break
            assert time.monotonic() < deadline, "store B never heard of the revocation"
            await asyncio.sleep(0.01)
    finally:
        await store_a.close()
        await store_b.close()
        await redis_a.aclose()
        await redis_b.aclose()


def test_revocation_stops_the_next_proxied_request(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(gateway_key_cache_ttl=3600)
    key_id, key = gateway.create_key()
    client = client_for(gateway, key)
    assert client.chat.completions.create(model="sim-model", messages=CHAT).choices
    gateway.call(gateway.services.keys.revoke(key_id))
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="sim-model", messages=CHAT)
    assert raised.value.code == "key_revoked"


def test_revocation_reaches_another_gateway_through_redis(
    gateway_factory: GatewayFactory, redis_url: str
) -> None:
    database = PostgresDatabase()
    database.create()
    gateways: list[Gateway] = []
    try:
        shared = {
            "database_url": database.url,
            "redis_url": redis_url,
            "gateway_key_cache_ttl": 3600,
        }
        first = gateway_factory(**shared)
        second = gateway_factory(**shared)
        gateways += [first, second]
        key_id, key = first.create_key()
        for gateway in (first, second):
            assert client_for(gateway, key).models.list().data  # cached in both
        first.call(first.services.keys.revoke(key_id))
        deadline = time.monotonic() + 5
        while True:
            try:
                client_for(second, key).models.list()
            except openai.PermissionDeniedError as error:
                assert error.code == "key_revoked"
                break
            assert time.monotonic() < deadline, "the second gateway kept the revoked key"
            time.sleep(0.01)
    finally:
        for gateway in gateways:  # before the database goes away under them
            gateway.server.stop()
        database.drop()
