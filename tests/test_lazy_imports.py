"""What a worker does not load when it does not need it: redis-py without Redis configured.

(Alembic at a current schema: tests/test_db.py; the trace SDK without an endpoint:
tests/ops/test_tracing.py.) Each is megabytes of every worker's memory.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.processes import run_python


def test_a_gateway_without_redis_never_imports_redis_py(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from vllm_gateway.app import _pipeline, create_app
        from vllm_gateway.cli import main
        from vllm_gateway.clock import system_clock
        from vllm_gateway.services import open_services
        from vllm_gateway.settings import Settings

        settings = Settings(
            _env_file=None,
            vllm_url="http://127.0.0.1:9/v1",
            database_path={str(tmp_path / "gateway.db")!r},
            gateway_journal_dir={str(tmp_path / "journal")!r},
            gateway_admin_key="admin-" + "z" * 32,
        )
        create_app(settings)

        async def main():
            async with open_services(settings, system_clock) as services:
                assert services.redis is None and services.limiter.outage is None
                _pipeline(services)

        asyncio.run(main())
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "redis")
        assert not loaded, loaded
        """
    )
    run_python(script, tmp_path)
