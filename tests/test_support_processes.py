"""The test suite's own process helper: a server whose free port was taken is started again."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.processes import cli_env, start_on_free_port
from tests.support.servers import free_port


def test_a_port_taken_before_the_server_binds_it_is_tried_again_with_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports: Iterator[int] = iter([taken, free_port()])
        tried: list[int] = []

        def next_port() -> int:
            tried.append(next(ports))
            return tried[-1]

        monkeypatch.setattr(processes, "free_port", next_port)
        log = tmp_path / "simulator.log"
        process = start_on_free_port(
            lambda port: ["simulator", "--port", str(port)], cli_env(), log, "/health"
        )
        try:
            assert tried[0] == taken and process.url.endswith(f":{tried[1]}")
            assert "address already in use" not in log.read_text()  # this try's log only
        finally:
            process.stop()


def test_a_server_that_fails_for_another_reason_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[int] = []

    def next_port() -> int:
        tried.append(free_port())
        return tried[-1]

    monkeypatch.setattr(processes, "free_port", next_port)
    with pytest.raises(AssertionError, match="server exited early"):
        start_on_free_port(
            lambda port: ["simulator", "--port", str(port), "--no-such-option"],
            cli_env(),
            tmp_path / "simulator.log",
            "/health",
        )
    assert len(tried) == 1
