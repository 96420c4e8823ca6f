"""The gateway's own Redis client (resp/) against real redis-server processes: commands,
pipelining, logins, the URL forms, and what a stopped, killed or restarted server does."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.redis_server import PrivateRedis, redis_binary
from tests.support.sentinel import MASTER, sentinel_cluster
from vllm_gateway.resp.address import Endpoint, Login, parse_url
from vllm_gateway.resp.client import RedisClient
from vllm_gateway.resp.errors import (
    NoScriptError,
    ReadOnlyError,
    RedisConnectionError,
    RedisError,
    ReplyError,
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    made = RedisClient.from_url(redis_url, timeout=1.0, connect_timeout=1.0)
    try:
        yield made
    finally:
        await made.aclose()


async def test_commands_and_their_replies(client: RedisClient) -> None:
    assert await client.ping()
    assert await client.execute("SET", "k", "v") == b"OK"
    assert await client.execute("GET", "k") == b"v"
    assert await client.execute("GET", "missing") is None
    assert await client.execute("INCRBY", "n", 5) == 5
    assert await client.execute("RPUSH", "l", "a", b"b", 3) == 3
    assert await client.execute("LRANGE", "l", 0, -1) == [b"a", b"b", b"3"]
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        await client.execute("INCR", "l")
    assert await client.execute("GET", "k") == b"v"  # an error reply leaves the connection fine


async def test_scripts_load_run_and_are_missed_after_a_flush(client: RedisClient) -> None:
    script = "return {tonumber(ARGV[1]) + 1, {ARGV[2], 'x'}}"
    sha = await client.script_load(script)
    assert len(sha) == 40
    assert await client.evalsha(sha, 0, 41, "y") == [42, [b"y", b"x"]]
    await client.execute("SCRIPT", "FLUSH")
    with pytest.raises(NoScriptError):
        await client.evalsha(sha, 0, 1, "y")


async def test_concurrent_commands_share_one_connection_and_keep_their_order(
    client: RedisClient,
) -> None:
    replies = await asyncio.gather(*(client.execute("INCR", "counter") for _ in range(500)))
    assert replies == list(range(1, 501))
    clients = await client.execute("CLIENT", "LIST")
    assert clients.count(b"cmd=client") == 1 and clients.count(b"\n") == 1


async def test_a_large_reply_arriving_in_pieces(client: RedisClient) -> None:
    value = b"x" * 3_000_000
    await client.execute("SET", "big", value)
    assert await client.execute("GET", "big") == value


async def test_a_cancelled_command_does_not_take_the_next_ones_reply(
    client: RedisClient,
) -> None:
    await client.execute("SET", "a", "1")
    slow = asyncio.ensure_future(client.execute("EVAL", "redis.call('GET', 'a'); return 'slow'", 0))
    await asyncio.sleep(0)
    slow.cancel()
    assert await client.execute("GET", "a") == b"1"


async def test_a_published_message_reaches_a_subscriber(redis_url: str) -> None:
    publisher = RedisClient.from_url(redis_url, timeout=1.0)
    subscriber = RedisClient.from_url(redis_url)
    subscription = subscriber.pubsub()
    try:
        await subscription.subscribe("news")
        confirmed = await subscription.get_message(timeout=1.0)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        assert await subscription.get_message(timeout=0.05) is None
        assert await publisher.publish("news", "hello") == 1
        message = await subscription.get_message(timeout=1.0)
        assert message == {"type": "message", "channel": b"news", "data": b"hello"}
    finally:
        await subscription.aclose()
        await publisher.aclose()
        await subscriber.aclose()


async def test_a_subscription_reports_a_lost_connection_once_then_subscribes_again(
    own_redis: PrivateRedis,
) -> None:
    subscriber = RedisClient.from_url(own_redis.url(), connect_timeout=1.0)
    subscription = subscriber.pubsub()
    try:
        await subscription.subscribe("news")
        assert (await subscription.get_message(timeout=1.0) or {})["type"] == "subscribe"
        own_redis.kill()
        with pytest.raises(RedisConnectionError):
            await subscription.get_message(timeout=2.0)
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await subscription.get_message(timeout=0.1)  # still down
        own_redis.start()
        confirmed = await subscription.get_message(timeout=2.0)
        assert confirmed is not None and confirmed["type"] == "subscribe"
        publisher = RedisClient.from_url(own_redis.url(), timeout=1.0)
        try:
            assert await publisher.publish("news", "back") == 1
        finally:
            await publisher.aclose()
        message = await subscription.get_message(timeout=1.0)
        assert message is not None and message["data"] == b"back"
    finally:
        await subscription.aclose()
        await subscriber.aclose()


async def test_a_stalled_server_times_the_command_out_and_fails_what_waits_behind_it(
    own_redis: PrivateRedis,
) -> None:
    client = RedisClient.from_url(own_redis.url(), timeout=0.3, connect_timeout=0.3)
    try:
        assert await client.ping()
        own_redis.pause()
        started = time.monotonic()
        results = await asyncio.gather(
            client.execute("INCR", "n"), client.execute("INCR", "n"), return_exceptions=True
        )
        assert all(isinstance(result, RedisConnectionError) for result in results)
        assert "did not answer within 0.3 s" in str(results[0])
        assert time.monotonic() - started < 1.0
        with pytest.raises(RedisConnectionError):  # a new connection is not answered either
            await client.ping()
        own_redis.resume()
        assert await client.ping()
        # The stalled commands ran when the server woke: their outcome was unknown, not lost.
        assert int(await client.execute("GET", "n")) == 2
    finally:
        own_redis.resume()
        await client.aclose()


async def test_a_restarted_server_is_connected_to_again(own_redis: PrivateRedis) -> None:
    client = RedisClient.from_url(own_redis.url(), timeout=1.0, connect_timeout=1.0)
    try:
        await client.execute("SET", "k", "v")
        own_redis.kill()
        with pytest.raises(RedisConnectionError):
            await client.execute("GET", "k")
        with pytest.raises(RedisConnectionError, match="cannot connect to Redis at"):
            await client.execute("GET", "k")
        own_redis.start()
        assert await client.execute("GET", "k") is None  # a killed server forgot it
    finally:
        await client.aclose()


async def test_a_demoted_primary_answers_readonly_and_the_connection_is_dropped(
    own_redis: PrivateRedis,
) -> None:
    with tempfile.TemporaryDirectory(prefix="vgw-redis-") as directory:
        other = PrivateRedis(redis_binary(), Path(directory))
        other.start()
        client = RedisClient.from_url(own_redis.url(), timeout=1.0)
        try:
            first = await client.execute("CLIENT", "ID")
            await client.execute("REPLICAOF", "127.0.0.1", other.port)  # demoted, as by failover
            with pytest.raises(ReadOnlyError):
                await client.execute("SET", "k", "v")
            assert await client.execute("CLIENT", "ID") != first  # a new connection, asked anew
        finally:
            await client.aclose()
            other.stop()


async def test_callers_during_an_outage_share_one_connect_attempt() -> None:
    with socket.socket() as unused:  # bound, never listening: every connect is refused
        unused.bind(("127.0.0.1", 0))
        endpoint = Endpoint("127.0.0.1", unused.getsockname()[1])
        attempts = 0

        async def locate() -> Endpoint:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0.05)  # the others arrive while this attempt is under way
            return endpoint

        client = RedisClient(locate, connect_timeout=1.0)
        try:
            results = await asyncio.gather(
                *(client.ping() for _ in range(50)), return_exceptions=True
            )
            assert all(isinstance(result, RedisConnectionError) for result in results)
            assert attempts == 1  # one attempt for all fifty, not one each
            with pytest.raises(RedisConnectionError):
                await client.ping()
            assert attempts == 2  # a caller after the failure tries again
        finally:
            await client.aclose()


async def test_passwords_users_and_database_numbers_from_the_url() -> None:
    with tempfile.TemporaryDirectory(prefix="vgw-redis-") as directory:
        server = PrivateRedis(
            redis_binary(),
            Path(directory),
            args=("--requirepass", "s3cr/t", "--user", "ops", "on", ">pw", "~*", "+@all"),
        )
        server.start()
        try:
            port = server.port
            numbered = RedisClient.from_url(f"redis://:s3cr%2Ft@127.0.0.1:{port}/3", timeout=1)
            as_user = RedisClient.from_url(f"redis://ops:pw@127.0.0.1:{port}?db=3", timeout=1)
            wrong = RedisClient.from_url(f"redis://:nope@127.0.0.1:{port}", timeout=1)
            try:
                await numbered.execute("SET", "where", "db3")
                assert await as_user.execute("GET", "where") == b"db3"
                assert await as_user.execute("ACL", "WHOAMI") == b"ops"
                with pytest.raises(ReplyError, match="WRONGPASS"):
                    await wrong.ping()
            finally:
                for made in (numbered, as_user, wrong):
                    await made.aclose()
        finally:
            server.stop()


async def test_a_unix_socket_from_the_url() -> None:
    with tempfile.TemporaryDirectory(prefix="vgw-redis-") as directory:
        path = Path(directory) / "redis.sock"
        server = PrivateRedis(redis_binary(), Path(directory), args=("--unixsocket", str(path)))
        server.start()
        client = RedisClient.from_url(f"unix://{path}?db=2", timeout=1)
        try:
            assert await client.ping()
            await client.execute("SET", "k", "unix")
            assert await client.execute("GET", "k") == b"unix"
        finally:
            await client.aclose()
            server.stop()


def test_urls_are_read_or_refused_with_the_reason() -> None:
    assert parse_url("redis://example:6380/4") == (Endpoint("example", 6380), Login(db=4))
    assert parse_url("redis://u:p%40ss@h") == (Endpoint("h"), Login("u", "p@ss"))
    endpoint, _ = parse_url("rediss://h:6390?ssl_cert_reqs=none")
    assert endpoint.tls is not None and endpoint.port == 6390
    for url, reason in (
        ("http://h", "scheme"),
        ("redis://h:port", "numbers"),
        ("redis://h/zero", "numbers"),
        ("redis://h?socket_timeout=3", "unknown option 'socket_timeout'"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("unix://", "path"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_url(url)


async def test_the_primary_is_asked_of_the_sentinels_again_after_a_failover() -> None:
    with sentinel_cluster() as cluster:
        sentinels = [("127.0.0.1", 1)] + [("127.0.0.1", port) for port in cluster.sentinel_ports]
        client = RedisClient.via_sentinels(sentinels, MASTER, timeout=1.0, connect_timeout=1.0)
        unknown = RedisClient.via_sentinels(sentinels[:2], "nobody", connect_timeout=1.0)
        try:
            await client.execute("SET", "k", "v")
            with pytest.raises(RedisConnectionError, match="knows no primary called 'nobody'"):
                await unknown.ping()
            cluster.wait_replicated()
            cluster.primary.kill()
            deadline = time.monotonic() + 30
            while True:  # fails while the sentinels agree, then reaches the promoted replica
                try:
                    assert await client.execute("GET", "k") == b"v"
                    break
                except RedisError:
                    assert time.monotonic() < deadline, "never reached the new primary"
                    await asyncio.sleep(0.2)
            assert cluster.primary_port() == cluster.replica.port
        finally:
            await client.aclose()
            await unknown.aclose()
