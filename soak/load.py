"""The soak's clients: threads sending chat requests, half of them streamed, without pause,
each answer noted (status, error code, request id, the usage the client was told)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import httpx

from soak.world import MODEL

RESET = 0
"""The status noted when no answer came: the connection was refused or reset."""


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic time the request was sent
    status: int  # RESET when no answer came
    code: str | None  # the error's code: in the body, or in the stream's error event
    request_id: str | None
    stream: bool
    tokens: int | None  # total tokens the client was told of (None: no usage)


def _stream_outcome(text: str) -> tuple[str | None, int | None]:
    code, tokens = None, None
    for line in text.split("\n"):
        if not line.startswith("data: {"):
            continue
        try:
            event = json.loads(line[6:])
        except ValueError:
            continue  # a malformed chunk the backend sent, relayed as it was
        if "error" in event:
            code = event["error"].get("code")
        elif event.get("usage"):
            tokens = event["usage"]["total_tokens"]
    return code, tokens


def ask(client: httpx.Client, url: str, key: str, *, stream: bool, max_tokens: int = 8) -> Answer:
    """One chat request, noted."""
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me about faults"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    sent = time.monotonic()
    try:
        response = client.post(f"{url}/v1/chat/completions", json=body, headers={"x-api-key": key})
    except httpx.HTTPError:
        return Answer(sent, RESET, None, None, stream, None)
    request_id = response.headers.get("x-request-id")
    if response.status_code != 200:
        try:
            code = response.json()["error"].get("code")
        except (ValueError, KeyError, AttributeError):
            code = "not_openai_shaped"
        return Answer(sent, response.status_code, code, request_id, stream, None)
    if stream:
        code, tokens = _stream_outcome(response.text)
    else:
        code, tokens = None, response.json()["usage"]["total_tokens"]
    return Answer(sent, 200, code, request_id, stream, tokens)


class Load:
    """`clients` threads asking without pause until stopped; every answer is kept."""

    def __init__(self, url: str, key: str, clients: int) -> None:
        self.url, self.key, self.clients = url, key, clients
        self.answers: list[Answer] = []
        self.failures: list[str] = []  # clients that stopped on an error of their own
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._idle = [threading.Event() for _ in range(clients)]  # parked by pause()

    def start(self) -> None:
        self._running.set()
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def pause(self) -> None:
        """Stop sending; returns once every client's request in flight is answered."""
        self._running.clear()
        while any(not idle.is_set() for idle in self._idle):
            time.sleep(0.05)

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stopped.set()
        self._running.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, index: int) -> None:
        idle = self._idle[index]
        try:
            self._ask_until_stopped(index, idle)
        except Exception as exc:  # the soak reports it (and fails) rather than hanging
            self.failures.append(f"client {index}: {exc!r}")
        finally:
            idle.set()  # even a client that failed never holds pause() up

    def _ask_until_stopped(self, index: int, idle: threading.Event) -> None:
        with httpx.Client(timeout=httpx.Timeout(30, connect=5)) as client:
            while not self._stopped.is_set():
                idle.clear()
                if not self._running.is_set():
                    idle.set()
                    self._running.wait()
                    continue
                self.answers.append(ask(client, self.url, self.key, stream=index % 2 == 1))
                if self.answers[-1].status != 200:
                    time.sleep(
                        0.1
                    )  # as a client that backs off: a part that is down is not hammered
            idle.set()
