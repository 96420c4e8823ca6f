"""Stored responses are addressed by a checked id, belong to their key, live on one backend."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BACKEND_KEY, GatewayFactory
from tests.support.clients import assert_error, client_for, post_json
from tests.support.servers import RunningServer, serve
from vllm_gateway.simulator import SimulatorConfig, create_simulator_app


@pytest.fixture
def two_backends() -> Iterator[list[RunningServer]]:
    config = SimulatorConfig(models=["sim-model"], api_key=BACKEND_KEY, tokens_per_second=0)
    with (
        serve(create_simulator_app(config)) as first,
        serve(create_simulator_app(config)) as second,
    ):
        yield [first, second]


def raw_status(url: str, request_line: bytes, key: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            request_line
            + b"\r\nhost: x\r\nx-api-key: "
            + key.encode()
            + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_dot_segments_never_reach_another_backend_route(
    gateway_factory: GatewayFactory, two_backends: list[RunningServer]
) -> None:
    gateway = gateway_factory(vllm_url=",".join(f"{b.url}/v1" for b in two_backends))
    _, key = gateway.create_key()
    for line in (
        b"GET /v1/responses/.. HTTP/1.1",
        b"GET /v1/responses/%2e%2e HTTP/1.1",
        b"POST /v1/responses/%2e%2e/cancel HTTP/1.1",
        b"GET /v1/responses/a%2Fb HTTP/1.1",
    ):
        assert raw_status(gateway.url, line, key) == 404, line
    for backend in two_backends:
        paths = {(r.method, r.path) for r in backend.app.state.simulator.requests}
        assert not any(path.startswith("/v1/responses") for _, path in paths)
        assert ("GET", "/v1/") not in paths and ("POST", "/v1/cancel") not in paths


def test_a_stored_response_is_its_keys_and_is_fetched_where_it_lives(
    gateway_factory: GatewayFactory, two_backends: list[RunningServer]
) -> None:
    gateway = gateway_factory(vllm_url=",".join(f"{b.url}/v1" for b in two_backends))
    _, owner = gateway.create_key("owner")
    _, other = gateway.create_key("other")
    with client_for(gateway, owner) as client:
        created = client.responses.create(model="sim-model", input="Remember this", store=True)
        streamed = client.responses.create(
            model="sim-model", input="And this", store=True, stream=True
        )
        streamed_id = next(
            event.response.id for event in streamed if event.type == "response.completed"
        )
        for response_id in (created.id, streamed_id):
            for _ in range(4):  # round robin would alternate; the response lives on one backend
                assert client.responses.retrieve(response_id).id == response_id
    for response_id in (created.id, streamed_id):
        url = f"{gateway.url}/v1/responses/{response_id}"
        assert_error(httpx.get(url, headers={"x-api-key": other}), 404, "not_found")
        assert_error(httpx.post(f"{url}/cancel", headers={"x-api-key": other}), 404, "not_found")
    assert_error(
        httpx.get(f"{gateway.url}/v1/responses/resp_never_made", headers={"x-api-key": owner}),
        404,
        "not_found",
    )


def test_a_client_cannot_choose_the_engine_request_id(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory()
    _, key = gateway.create_key()
    body = {"model": "sim-model", "input": "hi", "request_id": "resp_someone_elses"}
    error = assert_error(
        post_json(gateway, key, "/v1/responses", body), 400, "unsupported_parameter"
    )
    assert error["param"] == "request_id"
