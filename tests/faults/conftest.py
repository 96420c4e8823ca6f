"""Fixtures of the fault tests: parts the tests can make unreachable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import fresh_postgres
from tests.support.tcp_proxy import TcpProxy, tcp_proxy


@pytest.fixture
def postgres_behind_proxy() -> Iterator[tuple[str, str, TcpProxy]]:
    """(URL through the proxy, direct URL, the proxy) of a fresh PostgreSQL database."""
    with fresh_postgres() as direct, tcp_proxy("127.0.0.1", 5432) as proxy:
        yield direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), direct, proxy
