"""Every admin API operation, fuzzed from its own OpenAPI document: bad input is never a 5xx.

schemathesis generates valid and invalid requests from /openapi.json and checks each
answer: no server error, and every answer (error answers included) has the status and
the shape the document declares, so the documented 400/404 in OpenAI's shape are real.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.servers import RunningServer
from vllm_gateway.app import create_app
from vllm_gateway.http_guard import GuardedHttpToolsProtocol
from vllm_gateway.settings import Settings
from vllm_gateway.web.admin_app import build_admin_api

ADMIN_KEY = "admin-" + secrets.token_hex(16)


def gateway_settings(directory: Path) -> Settings:
    values: dict[str, Any] = {
        "vllm_url": "http://127.0.0.1:9/v1",  # no backend: the admin API needs none
        "database_url": f"sqlite+aiosqlite:///{directory / 'gateway.db'}",
        "gateway_admin_key": ADMIN_KEY,
        "gateway_journal_dir": str(directory / "journal"),
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def admin_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    app = create_app(gateway_settings(tmp_path_factory.mktemp("fuzz")))
    server = RunningServer(app, http=GuardedHttpToolsProtocol)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _document() -> dict[str, Any]:
    """The OpenAPI document the gateway serves at /openapi.json (building an app does no I/O)."""
    api = build_admin_api(gateway_settings(Path("/unused")))
    document: dict[str, Any] = api.openapi()
    return document


# The admin API; the client API (/v1, hand-described in web/client_openapi.py) is OpenAI's and is
# tested against the real client elsewhere.
schema = schemathesis.openapi.from_dict(_document()).exclude(tag="client API")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_input_makes_a_server_error(case: Any, admin_gateway: RunningServer) -> None:
    response = case.call(
        base_url=admin_gateway.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
