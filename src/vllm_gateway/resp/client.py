"""A Redis client that keeps one connection open and sends every command over it.

Commands are pipelined on the one connection (connection.py). When it fails, the commands
waiting on it fail with RedisConnectionError and the next command opens a new one; callers
that arrive while it is being opened wait for the same attempt, so an outage costs one
connect per attempt, not one per command. Where the server is comes from a locator: the
fixed endpoint of REDIS_URL, or the sentinels, asked again for every new connection (after
a failover the next connection goes to the promoted replica; a primary that was demoted
answers writes with READONLY, which closes the connection, so the next one asks again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from vllm_gateway.resp.address import Endpoint, Login, parse_url
from vllm_gateway.resp.connection import Command, Connection, ask, open_connection
from vllm_gateway.resp.errors import RedisConnectionError, RedisError
from vllm_gateway.resp.subscription import Subscription

Locator = Callable[[], Awaitable[Endpoint]]


class RedisClient:
    """Commands to one Redis server (or the primary the sentinels name)."""

    def __init__(
        self,
        locate: Locator,
        login: Login | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        primary_only: bool = False,
    ) -> None:
        """`timeout`: seconds a command may wait for its reply (None: no limit);
        `primary_only`: refuse a server that is not a primary (found through sentinels)."""
        self._locate = locate
        self._login = login or Login()
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._primary_only = primary_only
        self._connection: Connection | None = None
        self._opening: asyncio.Task[Connection] | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float | None = None, connect_timeout: float | None = None
    ) -> RedisClient:
        """A client of the server REDIS_URL names (ValueError if it is malformed)."""
        endpoint, login = parse_url(url)

        async def fixed() -> Endpoint:
            return endpoint

        return cls(fixed, login, timeout=timeout, connect_timeout=connect_timeout)

    @classmethod
    def via_sentinels(
        cls,
        sentinels: list[tuple[str, int]],
        master: str,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> RedisClient:
        """A client of the primary the sentinels name `master` (asked at every connect)."""
        return cls(
            Sentinels(sentinels, master, connect_timeout),
            timeout=timeout,
            connect_timeout=connect_timeout,
            primary_only=True,
        )

    # --- commands -------------------------------------------------------------------------

    async def execute(self, *command: str | bytes | int | float) -> Any:
        """Send one command; its reply (bytes, int, list, None) or a RedisError."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connected()
        return await connection.send(command)

    async def ping(self) -> bool:
        """Whether Redis answers PING (else a RedisError)."""
        return bool(await self.execute("PING") == b"PONG")

    async def evalsha(self, sha: str, numkeys: int, *args: str | bytes | int | float) -> Any:
        """Run a loaded script (NoScriptError when Redis does not hold it)."""
        return await self.execute("EVALSHA", sha, numkeys, *args)

    async def script_load(self, script: str) -> str:
        """Load a script; its SHA-1."""
        sha = await self.execute("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def publish(self, channel: str, message: str | bytes) -> int:
        """Publish on a channel; how many subscribers got it."""
        return int(await self.execute("PUBLISH", channel, message))

    def pubsub(self) -> Subscription:
        """A subscription on a connection of its own (this client's server and login)."""
        return Subscription(self.connect)

    async def aclose(self) -> None:
        """Close the connection; commands after this fail."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- connecting -----------------------------------------------------------------------

    async def connect(self) -> Connection:
        """A new connection to the server, logged in (and checked to be the primary)."""
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")
        endpoint = await self._locate()
        connection = await open_connection(
            endpoint, connect_timeout=self._connect_timeout, reply_timeout=self._timeout
        )
        try:
            async with asyncio.timeout(self._connect_timeout):  # a stalled server, too
                await self._log_in(connection)
        except TimeoutError:
            connection.close()
            raise RedisConnectionError(
                f"Redis at {endpoint} did not answer within {self._connect_timeout:g} s"
            ) from None
        except BaseException:
            connection.close()
            raise
        return connection

    async def _log_in(self, connection: Connection) -> None:
        login = self._login
        commands: list[Command] = []
        if login.password is not None:
            user = (login.username,) if login.username else ()
            commands.append(("AUTH", *user, login.password))
        if login.db:
            commands.append(("SELECT", login.db))
        if self._primary_only:
            commands.append(("ROLE",))
        if not commands:
            return
        replies = await ask(connection, *commands)
        if self._primary_only and replies[-1][0] != b"master":
            raise RedisConnectionError(
                f"Redis at {connection.endpoint} is not the primary (a failover is under way)"
            )

    async def _connected(self) -> Connection:
        """The shared connection, opened by the first caller; the others wait for it."""
        if self._opening is None:
            self._opening = asyncio.create_task(self.connect(), name="redis-connect")
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, task: asyncio.Task[Connection]) -> None:
        self._opening = None
        if task.cancelled() or task.exception() is not None:  # retrieved: each waiter raises it
            return
        self._connection = task.result()


class Sentinels:
    """Asks the sentinels, in turn, which server is the primary of `master`."""

    def __init__(
        self, addresses: list[tuple[str, int]], master: str, timeout: float | None
    ) -> None:
        self._endpoints = [Endpoint(host, port) for host, port in addresses]
        self._master = master
        self._timeout = timeout

    async def __call__(self) -> Endpoint:
        problems: list[str] = []
        for sentinel in list(self._endpoints):
            try:
                connection = await open_connection(
                    sentinel, connect_timeout=self._timeout, reply_timeout=self._timeout
                )
                try:
                    (reply,) = await ask(
                        connection, ("SENTINEL", "get-master-addr-by-name", self._master)
                    )
                finally:
                    connection.close()
            except RedisError as exc:
                problems.append(str(exc))
                continue
            if reply:
                # The one that answered is asked first next time.
                self._endpoints.remove(sentinel)
                self._endpoints.insert(0, sentinel)
                host, port = reply
                return Endpoint(host.decode(), int(port))
            problems.append(f"sentinel {sentinel} knows no primary called {self._master!r}")
        raise RedisConnectionError("no sentinel named the primary: " + "; ".join(problems))
