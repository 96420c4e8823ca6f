"""Clients of a running gateway: the official openai client, raw HTTP, and error checks."""

from __future__ import annotations

from typing import Any

import httpx
import openai


class OpenClients:
    """The openai clients a test made with client_for, closed when the test ends (a client
    left to the garbage collector leaves an unclosed socket to a later test)."""

    def __init__(self) -> None:
        self.clients: list[openai.OpenAI] = []

    def close(self) -> None:
        while self.clients:
            self.clients.pop().close()


OPEN_CLIENTS = OpenClients()


def client_for(gateway: Any, key: str, **options: Any) -> openai.OpenAI:
    """The official openai client, pointed at the gateway, never retrying on its own."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, **options)
    OPEN_CLIENTS.clients.append(client)
    return client


def post_json(
    gateway: Any, key: str | None, path: str, body: Any, **headers: str
) -> httpx.Response:
    """POST a JSON body with the key as x-api-key (none when `key` is None)."""
    sent = {"x-api-key": key} if key is not None else {}
    sent.update(headers)
    return httpx.post(f"{gateway.url}{path}", json=body, headers=sent, timeout=30)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI-shaped error object of a response (fails if the shape is wrong)."""
    body = response.json()
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check status and code of an OpenAI-shaped error; returns the error object."""
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code, error
    return error
