"""The access log: a line per request on standard output, in JSON or text, never a secret, a
prompt or an answer."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime
from select import PIPE_BUF

import httpx
import openai
import pytest

from tests.conftest import BACKEND_KEY, GatewayFactory
from tests.support.clients import client_for
from tests.support.turns import busy_turn
from vllm_gateway.accounting.access_log import AccessLog, _Clock
from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.turn_writes import TurnWrites, turn_writes

PROMPT = "the launch codes are 0000 and the patient is called Ada"


def lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith('{"time"')]


def output_with(capfd: pytest.CaptureFixture[str], marker: str, count: int) -> str:
    """Standard output once `count` lines hold `marker` (a line is written just after the
    answer's last byte, so the client may be a moment ahead of it)."""
    output = ""
    deadline = time.monotonic() + 5
    while output.count(marker) < count:
        assert time.monotonic() < deadline, output
        time.sleep(0.02)
        output += capfd.readouterr().out
    return output


def test_json_lines_tell_each_request_and_hold_no_secret(
    gateway_factory: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    gateway = gateway_factory(gateway_access_log="json")
    key_id, key = gateway.create_key("logged", models=["sim-model"])
    client = client_for(gateway, key)
    answer = client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": PROMPT}], max_tokens=5
    )
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="other-model", messages=[{"role": "user", "content": PROMPT}]
        )
    stream = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=3,
        stream=True,
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    wrong = "vgw-" + "x" * 44
    assert (
        httpx.get(
            f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {wrong}"}
        ).status_code
        == 401
    )

    output = output_with(capfd, '"request_id"', 4)
    served, refused, streamed_line, unauthenticated = lines(output)
    assert answer.usage is not None
    assert served["key_id"] == key_id and served["status"] == 200
    assert (served["prompt_tokens"], served["completion_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert served["model"] == "sim-model" and served["route"] == "/v1/chat/completions"
    assert isinstance(served["latency_ms"], float) and served["backend"]
    assert served["request_id"] and served["time"].endswith("Z")  # type: ignore[union-attr]
    assert {"team_id", "queued_ms", "ttft_ms", "cost_usd", "reason"} <= set(served)
    assert (refused["status"], refused["reason"], refused["admitted"]) == (
        403,
        "model_not_allowed",
        False,
    )
    assert streamed_line["stream"] is True and streamed_line["ttft_ms"] is not None
    assert (unauthenticated["status"], unauthenticated["key_id"]) == (401, None)
    # Never a secret, a prompt or an answer.
    secret = key[4 + len(key_id) :]
    content = answer.choices[0].message.content or ""
    for forbidden in (secret, key, wrong[4:], BACKEND_KEY, gateway.admin_key, PROMPT, "Ada"):
        assert forbidden not in output
    for text in (content, streamed):
        assert len(text) > 8 and text not in output


def test_text_lines_and_off(
    gateway_factory: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    text = gateway_factory(gateway_access_log="text")
    key_id, key = text.create_key("plain")
    bearer = {"authorization": f"Bearer {key}"}
    assert httpx.get(f"{text.url}/v1/models", headers=bearer).status_code == 200
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert (
        httpx.post(f"{text.url}/v1/chat/completions", json=body, headers=bearer).status_code == 200
    )
    output = output_with(capfd, "request_id=", 1)
    (line,) = [line for line in output.splitlines() if "request_id=" in line]
    fields = dict(part.split("=", 1) for part in line.split(" "))
    assert (fields["key_id"], fields["status"], fields["model"]) == (key_id, "200", "sim-model")
    assert fields["reason"] == "-" and fields["time"].endswith("Z")

    quiet = gateway_factory(gateway_access_log="off")
    _, key = quiet.create_key("quiet")
    answered = httpx.post(
        f"{quiet.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert answered.status_code == 200
    time.sleep(0.3)  # what a line would have taken to appear
    assert "request_id" not in capfd.readouterr().out


@pytest.mark.parametrize("ts", [0.5, 1796130750.0, 1796130750.999, 1796130751.0625])
def test_line_times_are_iso_8601_utc_to_the_millisecond(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    clock = _Clock()
    clock(ts - 1)  # a second formatted before: the cache must not leak into the next
    assert clock(ts) == expected.replace("+00:00", "Z")


class RecordedLog(AccessLog):
    """An access log to a pipe that remembers each write(2) it made."""

    def __init__(self, fd: int, writes: TurnWrites | None = None) -> None:
        super().__init__("json", fd, writes)
        self.writes: list[bytes] = []

    def _write(self, data: bytes) -> None:
        self.writes.append(data)
        super()._write(data)


def served(number: int) -> UsageEvent:
    return UsageEvent(
        ts=1796130750.0 + number,
        request_id=f"{number:032x}",
        key_id="k" * 12,
        model="m" * 200,  # a long model name: a line of about 500 bytes
        route="/v1/chat/completions",
        status=200,
        prompt_tokens=17,
        completion_tokens=number,
        latency_ms=1.0,
        ttft_ms=0.5,
        backend="127.0.0.1:8000",
        stream=False,
    )


def test_lines_of_one_loop_turn_are_written_together_in_whole_lines_below_pipe_buf() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)

    async def one_turn() -> RecordedLog:
        log = RecordedLog(write_end, busy_turn(asyncio.get_running_loop()))  # a loaded gateway
        for number in range(30):
            log.request(served(number))
            if number == 14:
                log.unauthenticated(
                    ts=1.0, request_id="r" * 32, route="/v1/models", status=401, reason="bad_key"
                )
        assert log.writes == []  # nothing before the turn ends
        await asyncio.sleep(0)
        return log

    log = asyncio.run(one_turn())
    written = b""
    while chunk := os.read(read_end, 65536):
        written += chunk
        if len(written) == sum(map(len, log.writes)):
            break
    assert written == b"".join(log.writes)
    assert 2 < len(log.writes) < 31  # several lines per write, and more than one write
    for data in log.writes:
        assert len(data) <= PIPE_BUF and data.endswith(b"\n")
    parsed = [json.loads(line) for line in written.splitlines()]
    assert [line["request_id"] for line in parsed] == [f"{number:032x}" for number in range(15)] + [
        "r" * 32
    ] + [f"{number:032x}" for number in range(15, 30)]
    assert parsed[15]["status"] == 401 and parsed[29]["completion_tokens"] == 28
    os.close(read_end)
    os.close(write_end)


def test_a_line_of_an_idle_gateway_is_written_at_once() -> None:
    read_end, write_end = os.pipe()

    async def alone() -> None:
        writes = turn_writes(asyncio.get_running_loop())
        writes.requests = 1  # the request the line is for: nothing to share a turn with
        log = RecordedLog(write_end, writes)
        log.request(served(3))
        assert len(log.writes) == 1  # before the turn ends

    asyncio.run(alone())
    assert json.loads(os.read(read_end, PIPE_BUF))["completion_tokens"] == 3
    os.close(read_end)
    os.close(write_end)


def test_a_line_without_turn_writes_is_written_at_once() -> None:
    read_end, write_end = os.pipe()
    log = RecordedLog(write_end)
    log.request(served(7))
    assert len(log.writes) == 1
    assert json.loads(os.read(read_end, PIPE_BUF))["completion_tokens"] == 7
    os.close(read_end)
    os.close(write_end)
