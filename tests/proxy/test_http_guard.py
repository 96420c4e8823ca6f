"""The request head is bounded and slow clients are timed out, on a real gateway server."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

from tests.conftest import Gateway, GatewayFactory
from tests.support.usage import recorded_events


def raw_exchange(gateway: Gateway, data: bytes, *, pause: float = 0.0, rest: bytes = b"") -> bytes:
    """Send `data` (then `rest` after `pause` s) on a fresh connection; return all it answers."""
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=10) as sock:
        try:
            sock.sendall(data)
            if pause:
                time.sleep(pause)
            if rest:
                sock.sendall(rest)
        except OSError:
            pass  # the gateway may close before taking everything: its answer is what counts
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, json.loads(body)["error"]


def test_a_huge_header_is_431_and_the_worker_keeps_serving(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    huge = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (64 << 20)
    answers: list[bytes] = []
    sender = threading.Thread(target=lambda: answers.append(raw_exchange(gateway, huge)))
    sender.start()
    # Meanwhile the worker answers others (it never parses more than the cap of that head).
    served = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": key}, timeout=10)
    assert served.status_code == 200
    sender.join(30)
    status, error = status_and_error(answers[0])
    assert (status, error["code"]) == (431, "headers_too_large")


def test_too_many_headers_are_431(gateway: Gateway) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + b"".join(
        b"x-h%d: v\r\n" % n for n in range(1000)
    )
    status, error = status_and_error(raw_exchange(gateway, head + b"\r\n"))
    assert (status, error["code"]) == (431, "too_many_headers")


def test_a_bad_head_on_a_kept_alive_connection_is_answered_too(gateway: Gateway) -> None:
    first = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
    second = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-h: v\r\n" * 1000 + b"\r\n"
    answer = raw_exchange(gateway, first, pause=0.5, rest=second)
    answered, refused = answer.split(b"HTTP/1.1 ")[1:]
    assert answered.startswith(b"200 ")
    status, error = status_and_error(b"HTTP/1.1 " + refused)
    assert (status, error["code"]) == (431, "too_many_headers")


def test_ordinary_large_headers_pass(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    cookie = "c=" + "x" * 20_000  # browsers send cookies this size
    response = httpx.get(
        f"{gateway.url}/v1/models", headers={"x-api-key": key, "cookie": cookie}, timeout=10
    )
    assert response.status_code == 200


def test_a_client_stalling_in_its_headers_gets_408(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(gateway_client_header_timeout=0.5)
    # The head trickles in and never ends: the gateway gives up on it.
    answer = raw_exchange(gateway, b"GET /v1/models HTTP/1.1\r\nhost: x\r\n", pause=1.5)
    status, error = status_and_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")


def test_a_client_stalling_in_its_body_gets_408(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(gateway_client_body_timeout=0.5)
    _, key = gateway.create_key()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 200\r\nx-api-key: " + key.encode() + b'\r\n\r\n{"model":'
    )
    status, error = status_and_error(raw_exchange(gateway, head, pause=1.5, rest=b'"sim-model"'))
    assert (status, error["code"]) == (408, "request_timeout")
    # The abandoned request is in the key's books as a client that went away, not served.
    (event,) = recorded_events(gateway)
    assert (event["status"], event["admitted"], event["reason"]) == (499, False, "client_closed")


def test_a_large_body_after_a_small_head_passes(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    long_prompt = "word " * 40_000  # 200 KB: it arrives with the head, past the head's cap
    body = {"model": "sim-model", "messages": [{"role": "user", "content": long_prompt}]}
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={**body, "max_tokens": 2},
        headers={"x-api-key": key},
        timeout=30,
    )
    assert response.status_code == 400  # the simulator's context (4096 tokens) is too short
    assert "context" in response.json()["error"]["message"]
