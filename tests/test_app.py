"""app.py's own parts: the ASGI lifespan it serves, and the admin app it builds when needed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.app import AdminApp, Lifespan, StartupError
from vllm_gateway.services import Services
from vllm_gateway.settings import Settings


class Server:
    """Plays the server's side of ASGI: feeds messages in, collects the app's answers."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        self.incoming = list(incoming)
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return self.incoming.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))

    def body(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def _failing_at_start(error: Exception) -> Callable[[], AbstractAsyncContextManager[None]]:
    """A lifespan context whose start-up raises `error`."""

    @asynccontextmanager
    async def context() -> AsyncIterator[None]:
        raise error
        yield  # pragma: no cover

    return context


def _lifespan_server() -> Server:
    return Server({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})


async def test_the_lifespan_runs_its_context_from_startup_to_shutdown() -> None:
    steps: list[str] = []

    @asynccontextmanager
    async def context() -> AsyncIterator[None]:
        steps.append("open")
        yield
        steps.append("close")

    server = _lifespan_server()
    await Lifespan(_never_called, context)({"type": "lifespan"}, server.receive, server.send)
    assert steps == ["open", "close"]
    assert [m["type"] for m in server.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_a_failed_startup_is_reported_to_the_server_and_raised() -> None:
    context = _failing_at_start(OSError("the database directory does not exist"))
    server = _lifespan_server()
    with pytest.raises(OSError, match="does not exist"):
        await Lifespan(_never_called, context)({"type": "lifespan"}, server.receive, server.send)
    (failed,) = server.sent
    assert failed["type"] == "lifespan.startup.failed"
    assert "the database directory does not exist" in failed["message"]


async def test_a_failed_shutdown_is_reported_as_such() -> None:
    @asynccontextmanager
    async def context() -> AsyncIterator[None]:
        yield
        raise RuntimeError("a writer did not flush")

    server = _lifespan_server()
    with pytest.raises(RuntimeError):
        await Lifespan(_never_called, context)({"type": "lifespan"}, server.receive, server.send)
    assert [m["type"] for m in server.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.failed",
    ]


async def test_other_scopes_pass_through_the_lifespan() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    context = _failing_at_start(AssertionError("not for an http request"))
    await Lifespan(app, context)({"type": "http"}, Server().receive, Server().send)
    assert seen == ["http"]


class CountingAdminApp(AdminApp):
    """An AdminApp whose build is counted and held until the test lets it finish."""

    def __init__(self, settings: Settings, *, fail_first: bool = False) -> None:
        super().__init__(settings)
        self.builds = 0
        self.release = threading.Event()
        self.fail_first = fail_first

    def _build(self, services: Services) -> ASGIApp:
        self.builds += 1
        assert self.release.wait(10), "the test never released the build"
        if self.fail_first and self.builds == 1:
            raise RuntimeError("templates are missing")

        async def built(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"built":true}'})

        return built


def _settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        vllm_url="http://127.0.0.1:9/v1",
        database_path=str(tmp_path / "gateway.db"),
        gateway_admin_key="admin-" + "x" * 32,
    )


async def test_requests_that_arrive_during_the_build_share_it(tmp_path: Path) -> None:
    admin = CountingAdminApp(_settings(tmp_path))
    admin.services = object()  # type: ignore[assignment]  # started: the build may run
    servers = [Server() for _ in range(3)]
    requests = [
        asyncio.ensure_future(admin({"type": "http"}, server.receive, server.send))
        for server in servers
    ]
    await asyncio.sleep(0.05)
    assert not any(request.done() for request in requests)  # all wait for the one build
    admin.release.set()
    await asyncio.gather(*requests)
    assert admin.builds == 1
    assert [server.body() for server in servers] == [{"built": True}] * 3
    later = Server()
    await admin({"type": "http"}, later.receive, later.send)
    assert admin.builds == 1 and later.body() == {"built": True}


async def test_a_failed_build_is_a_500_in_openai_shape_and_the_next_request_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admin = CountingAdminApp(_settings(tmp_path), fail_first=True)
    admin.services = object()  # type: ignore[assignment]
    admin.release.set()
    failed = Server()
    await admin({"type": "http"}, failed.receive, failed.send)
    assert failed.status() == 500
    assert failed.body()["error"]["code"] == "internal_error"
    assert "the admin app could not be built" in caplog.text
    retried = Server()
    await admin({"type": "http"}, retried.receive, retried.send)
    assert admin.builds == 2 and retried.body() == {"built": True}


async def test_before_the_services_start_the_admin_app_answers_503(tmp_path: Path) -> None:
    admin = CountingAdminApp(_settings(tmp_path))
    server = Server()
    await admin({"type": "http"}, server.receive, server.send)
    assert server.status() == 503 and server.body()["error"]["code"] == "starting"
    assert admin.builds == 0


async def _never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the lifespan passed a lifespan scope on")


async def test_a_startup_error_is_reported_in_its_one_line() -> None:
    context = _failing_at_start(StartupError("the gateway could not start: file is not a database"))
    server = _lifespan_server()
    with pytest.raises(StartupError):
        await Lifespan(_never_called, context)({"type": "lifespan"}, server.receive, server.send)
    assert server.sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "the gateway could not start: file is not a database",
        }
    ]
