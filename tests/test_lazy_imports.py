"""What a worker does not load when it does not need it (each is megabytes of every worker's
memory): redis-py ever (the gateway speaks RESP itself, resp/), the trace SDK and exporter
without an OTLP endpoint (nor the traced pipeline), aiohttp without an OIDC login or an alert
to send, uvicorn's reloader (watchfiles, anyio) ever, python-multipart before a form.
Alembic at a current schema: tests/test_db.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.processes import offline_settings, run_python


def test_a_gateway_imports_no_client_it_is_not_configured_to_use(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from vllm_gateway.app import _pipeline, create_app
        from vllm_gateway.cli import main
        from vllm_gateway.clock import system_clock
        from vllm_gateway.proxy.pipeline import Pipeline
        from vllm_gateway.services import open_services
        from vllm_gateway.settings import Settings

        {offline_settings(tmp_path)}
        create_app(settings)

        async def main():
            async with open_services(settings, system_clock) as services:
                assert services.redis is None and services.limiter.outage is None
                assert services.tracing is None
                assert type(_pipeline(services)) is Pipeline

        asyncio.run(main())
        unwanted = (
            "redis", "hiredis", "vllm_gateway.resp.client",  # only with Redis configured
            "vllm_gateway.tracing", "opentelemetry.sdk", "opentelemetry.exporter",
            "aiohttp",  # the backends are reached through routing/wire.py
            "watchfiles", "anyio",  # uvicorn's reloader (installed by uvicorn[standard] only)
            "python_multipart", "getpass",  # before a form; the CLI's user
        )
        loaded = sorted(
            name for name in sys.modules if any(
                name == prefix or name.startswith(prefix + ".") for prefix in unwanted
            )
        )
        assert not loaded, loaded
        """
    )
    run_python(script, tmp_path)


def test_a_gateway_using_redis_does_not_import_redis_py(tmp_path: Path, redis_url: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from vllm_gateway.clock import system_clock
        from vllm_gateway.limits.base import Subject
        from vllm_gateway.limits.model import Limits
        from vllm_gateway.services import open_services
        from vllm_gateway.settings import Settings

        {offline_settings(tmp_path, redis_url=repr(redis_url))}

        async def main():
            async with open_services(settings, system_clock) as services:
                assert services.redis is not None and await services.redis.ping()
                subject = Subject("key", "k1", Limits(rpm=5))
                reservation = await services.limiter.acquire([subject], 1, "req-1")
                assert reservation.headers  # the limit went through Redis
                await services.limiter.settle(reservation, 1)
                await services.keys.team_changed()  # published on the invalidation channel

        asyncio.run(main())
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "redis")
        assert not loaded, loaded
        """
    )
    run_python(script, tmp_path)


def test_the_admin_app_loads_on_the_first_request_that_needs_it(tmp_path: Path) -> None:
    """Probes, scrapes and /v1 never load FastAPI, its routers or Jinja2; a page does."""
    script = textwrap.dedent(
        f"""
        import socket, sys, threading, time
        import httpx, uvicorn
        from vllm_gateway.app import create_app
        from vllm_gateway.http_guard import GuardedHttpToolsProtocol
        from vllm_gateway.settings import Settings

        {offline_settings(tmp_path)}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, loop="uvloop", ws="none",
            http=GuardedHttpToolsProtocol, lifespan="on", log_level="warning",
        )
        server = uvicorn.Server(config)
        serving = threading.Thread(target=server.run)
        serving.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)

        def admin_app_loaded():
            unwanted = ("fastapi", "jinja2", "starlette.routing", "vllm_gateway.web.admin_app")
            return sorted(
                name for name in sys.modules
                if any(name == prefix or name.startswith(prefix + ".") for prefix in unwanted)
            )

        admin = settings.gateway_admin_key.get_secret_value()
        with httpx.Client(base_url=f"http://127.0.0.1:{{port}}", timeout=10) as client:
            alive = client.get("/healthz")
            assert alive.status_code == 200 and alive.json() == {{"status": "ok"}}, alive.text
            assert alive.headers["x-frame-options"] == "DENY"
            head = client.head("/healthz")
            assert head.status_code == 200 and head.content == b"", head.content
            assert head.headers["content-length"] == alive.headers["content-length"]
            ready = client.get("/readyz")  # no backend at 127.0.0.1:9
            assert ready.status_code == 503 and ready.json()["down"] == ["backends"], ready.text
            anonymous = client.get("/metrics")
            assert anonymous.status_code == 401, anonymous.text
            assert anonymous.json()["error"]["code"] == "invalid_api_key"
            assert anonymous.headers["www-authenticate"] == "Bearer"
            scraped = client.get("/metrics", headers={{"authorization": f"Bearer {{admin}}"}})
            assert scraped.status_code == 200 and "# TYPE" in scraped.text, scraped.text
            posted = client.post("/healthz")
            assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
            assert posted.json()["error"]["type"] == "invalid_request_error"
            assert client.get("/v1/models").status_code == 401
            assert not admin_app_loaded(), admin_app_loaded()

            page = client.get("/login")
            assert page.status_code == 200 and "<form" in page.text, page.text[:300]
            assert "content-security-policy" in page.headers
            assert "fastapi" in sys.modules and "vllm_gateway.web.admin_app" in sys.modules
            missing = client.get("/api/v1/keys")
            assert missing.status_code == 401 and missing.json()["error"]["code"], missing.text
        server.should_exit = True
        serving.join(20)
        assert not serving.is_alive(), "the gateway did not stop"
        """
    )
    run_python(script, tmp_path)
