"""What a worker does not load when it does not need it (each is megabytes of every worker's
memory): redis-py without Redis configured, the trace SDK and exporter without an OTLP
endpoint (nor the traced pipeline), aiohttp without an OIDC login or an alert to send.
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
            "redis", "vllm_gateway.tracing", "opentelemetry.sdk", "opentelemetry.exporter",
            "aiohttp",  # the backends are reached through routing/wire.py
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
