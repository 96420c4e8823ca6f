"""The benchmark harness: its upstream speaks vLLM, its load counts failures, its audit bites."""

from __future__ import annotations

import http.client
import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from bench import payloads, report, stream_audit, streaming
from bench.bare_proxy import running_bare_proxy
from bench.gateway import KEY_LIMITS, running_gateway, usage_counts
from bench.gc_probe import gc_seconds, probe_env
from bench.load import LoadResult, parse_summary, run_wrk
from bench.paced_upstream import running_paced_upstream
from bench.procs import cpu_seconds, preemptions, process_tree
from bench.redis_server import ScriptCalls, script_calls
from bench.run import NO_LIMITS_ENV
from bench.suite import (
    CHAT_PATH,
    Options,
    Run,
    Slice,
    Target,
    body_for,
    finish_gateway,
    key_names,
    measure_load,
    measure_ttfb,
    usage_check,
)
from bench.upstream import Upstream

from tests.support.redis_server import private_redis


def _request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def test_upstream_answers_like_vllm(upstream: Upstream) -> None:
    assert _request(upstream.json_port, "GET", "/health")[0] == 200
    status, _, body = _request(upstream.json_port, "GET", "/v1/models")
    assert status == 200
    assert [card["id"] for card in orjson.loads(body)["data"]] == [payloads.JSON_MODEL]

    status, content_type, body = _request(upstream.json_port, "POST", CHAT_PATH, body_for("json"))
    assert (status, content_type) == (200, "application/json")
    assert orjson.loads(body)["usage"]["total_tokens"] == 37

    status, content_type, body = _request(
        upstream.stream_port, "POST", CHAT_PATH, body_for("stream")
    )
    assert (status, content_type) == (200, "text/event-stream")
    events = [event for event in body.split(b"\n\n") if event]
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(event[len(b"data: ") :]) for event in events[:-1]]
    assert len(chunks) == payloads.STREAM_CONTENT_CHUNKS + 2
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_upstream_keeps_connections_alive_across_posts(upstream: Upstream) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", upstream.stream_port, timeout=10)
    try:
        for _ in range(3):
            connection.request("POST", CHAT_PATH, body=body_for("stream"))
            response = connection.getresponse()
            assert response.status == 200
            assert response.read() == payloads.sse_body(payloads.STREAM_MODEL)
            assert not response.will_close
    finally:
        connection.close()


def test_wrk_script_counts_answers_that_are_not_2xx(upstream: Upstream) -> None:
    base = f"http://127.0.0.1:{upstream.json_port}"
    good = run_wrk(base + CHAT_PATH, body_for("json"), connections=2, seconds=1)
    assert good.requests > 0 and good.non2xx == 0 and good.clean
    bad = run_wrk(base + "/v1/missing", body_for("json"), connections=2, seconds=1)
    assert bad.requests > 0 and bad.non2xx == bad.requests and not bad.clean
    assert bad.first_non2xx.startswith("404")


def test_wrk_summary_is_read_from_the_done_hook() -> None:
    line = (
        'BENCH_JSON {"requests":10,"duration_us":2000000,"bytes":1,"non2xx":1,'
        '"first_non2xx":"500 x","errors":{"connect":0,"read":0,"write":0,"status":1,'
        '"timeout":0},"latency_us":{"p50":1500,"p90":2000,"p99":3000,"max":4000,"mean":1.0}}'
    )
    result = parse_summary("Running 2s test\n" + line + "\n")
    assert (result.requests, result.rps, result.p50_ms, result.p99_ms) == (10, 5.0, 1.5, 3.0)
    assert not result.clean


@pytest.mark.parametrize(
    ("rows", "read", "in_flight", "ok"),
    [
        ({200: (5, 85, 100)}, 5, 0, True),
        ({200: (6, 102, 120), 499: (1, 0, 0)}, 5, 2, True),  # cut by wrk's stop
        ({200: (4, 68, 80)}, 5, 2, False),  # an answer the client read is missing
        ({200: (8, 136, 160)}, 5, 2, False),  # more rows than could have been in flight
        ({200: (5, 85, 100), 500: (1, 0, 0)}, 5, 2, False),  # a failure was hidden
        ({200: (5, 80, 100)}, 5, 0, False),  # tokens are not the backend's usage
    ],
)
def test_usage_audit(
    rows: dict[int, tuple[int, int, int]], read: int, in_flight: int, ok: bool
) -> None:
    assert usage_check("case", rows, read, in_flight).ok is ok


def test_usage_audit_reads_only_columns_every_schema_has(tmp_path: Path) -> None:
    # A newer schema: more columns, and rows for keys the benchmark did not make.
    database = tmp_path / "gateway.db"
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(
            "CREATE TABLE usage_events (id INTEGER PRIMARY KEY, key_id TEXT, team_id TEXT, "
            "status INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "cached_tokens INTEGER, reason TEXT)"
        )
        rows = [("ours", None, 200, 17, 20, 5, None)] * 3 + [
            ("ours", None, 499, 0, 0, 0, "client_gone"),
            ("theirs", "team", 429, 0, 0, 0, "rate_limited"),
            (None, None, 401, 0, 0, 0, "invalid_api_key"),
        ]
        connection.executemany(
            "INSERT INTO usage_events (key_id, team_id, status, prompt_tokens, "
            "completion_tokens, cached_tokens, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    counts = usage_counts(database)
    assert counts["ours"] == {200: (3, 51, 60), 499: (1, 0, 0)}
    assert usage_check("ours", counts["ours"], 3, 1).ok


def test_gateway_run_passes_every_honesty_check(upstream: Upstream) -> None:
    options = Options(seconds=1.0, rounds=1, connections=(2,), ttfb_rounds=5)
    paced_options = streaming.StreamOptions(streams=(4,), chunks=10, interval_ms=10, rounds=1)
    with running_paced_upstream(paced_options.interval_ms) as (paced_port, _):
        paced_url = f"http://127.0.0.1:{paced_port}"
        backends = f"{upstream.backends},{paced_url}/v1"
        bare = running_bare_proxy(upstream.json_base, upstream.stream_base)
        with bare as (bare_port, _), running_gateway(backends, None) as gateway:
            gateway.create_keys(key_names(options) + streaming.stream_key_names(paced_options))
            urls = {"json": gateway.url, "stream": gateway.url, "paced": gateway.url}
            target = Target("sqlite", urls, gateway.process.pid, gateway)
            streams = streaming.measure_streams([target], paced_options)
            runs = measure_load([target], options)
            ttfb = measure_ttfb(upstream.stream_port, [target], options.ttfb_rounds, bare_port)
            phase = finish_gateway(target, runs, ttfb, options)
            phase.checks += stream_audit.audit(phase.store, streams, phase.usage)
    failed = [f"{check.name}: {check.detail}" for check in phase.checks if not check.ok]
    assert failed == []
    assert [(run.kind, run.requests > 0, run.clean) for run in runs] == [
        ("json", True, True),
        ("stream", True, True),
    ]
    assert phase.ttfb["gateway"]["requests"] == 5
    # The bare proxy is timed beside the gateway: the stack's own share of the added time.
    assert (phase.ttfb["bare"]["requests"], phase.ttfb["bare"]["failures"]) == (5, 0)
    text = report.render(report.Results(runs, streams, [phase], None), options, paced_options)
    table = text.split("Streaming time to first body byte")[1].splitlines()
    timed = [line.split()[0] for line in table if line.strip()]
    assert timed[2:4] == ["bare", "sqlite"]  # after the title's line and the header
    assert phase.rss_mb > 0
    assert [(run.streams, run.chunks_read) for run in streams] == [(4, 40)]
    assert len(phase.checks) == 1 + 2 * 2 + 2 + 2  # shutdown, wrk rows, ttfb, streams


def test_the_bare_proxy_with_two_workers_answers_from_both(upstream: Upstream) -> None:
    options = Options(seconds=1.0, rounds=1, connections=(8,), ttfb_rounds=1)
    bare = running_bare_proxy(upstream.json_base, upstream.stream_base, workers=2)
    with bare as (port, pid):
        url = f"http://127.0.0.1:{port}"
        target = Target("bare@2w", {"json": url, "stream": url}, pid)
        runs = measure_load([target], options)
        # Under the supervisor: its workers (and multiprocessing's helper), each its own CPU.
        busy = [member for member in process_tree(pid)[1:] if cpu_seconds(member) >= 0.1]
    assert [(run.kind, run.requests > 0, run.clean) for run in runs] == [
        ("json", True, True),
        ("stream", True, True),
    ]
    assert len(busy) == 2  # both workers served the load


def test_stdout_pipe_carries_the_gateways_output_to_its_log(upstream: Upstream) -> None:
    backends = upstream.backends
    with running_gateway(backends, None, stdout_pipe=True) as gateway:
        stdout = os.readlink(f"/proc/{gateway.process.pid}/fd/1")
        gateway.create_keys(["piped"])
        key_id, key = gateway.keys["piped"]
        result = run_wrk(
            gateway.url + CHAT_PATH, body_for("json"), connections=2, seconds=1, api_key=key
        )
        assert result.clean and result.requests > 0
        gateway.shutdown()
        logged = gateway.log.read_text()
    assert stdout.startswith("pipe:")
    assert logged.count(f'"key_id":"{key_id}"') >= result.requests  # every access-log line


def test_gc_probe_counts_the_collections_of_a_child_and_of_its_fork(tmp_path: Path) -> None:
    script = (
        "import gc, os, time\n"
        "for _ in range(20): gc.collect()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    gc.collect(); os._exit(0)\n"
        "os.waitpid(pid, 0); print(pid)\n"
    )
    env = {**os.environ, **probe_env(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    child = int(done.stdout)
    files = sorted(int(path.name) for path in tmp_path.iterdir())
    assert len(files) == 2 and child in files
    parent = next(pid for pid in files if pid != child)
    assert gc_seconds(tmp_path, [parent]) > 0
    assert gc_seconds(tmp_path, [child]) > 0  # its own file, not the parent's
    assert gc_seconds(tmp_path, [parent, child]) > gc_seconds(tmp_path, [parent])
    assert gc_seconds(None, [parent]) == 0.0


def test_preemptions_count_a_process_that_shares_its_core_with_another() -> None:
    spin = [
        sys.executable,
        "-c",
        "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass",
    ]
    core = {min(os.sched_getaffinity(0))}
    pair = [subprocess.Popen(spin) for _ in range(2)]
    for process in pair:
        os.sched_setaffinity(process.pid, core)  # two runnable processes, one core
    time.sleep(0.8)
    shared = preemptions(pair[0].pid)
    for process in pair:
        process.wait(10)
    assert shared >= 30  # taken off the core for the other again and again (alone: about 5)


def test_script_calls_count_the_evalsha_calls_of_a_redis_and_its_time_in_them() -> None:
    with private_redis() as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert script_calls(server.url(0)) == ScriptCalls(0, 0)
        sock.sendall(b'SCRIPT LOAD "return 1"\r\n')
        sha = sock.recv(100).split(b"\r\n")[1].decode()
        for _ in range(3):
            sock.sendall(f"EVALSHA {sha} 0\r\n".encode())
            assert sock.recv(100) == b":1\r\n"
        counted = script_calls(server.url(0))
    assert counted.calls == 3
    assert counted.usec >= 0
    assert counted - ScriptCalls(1, 0) == ScriptCalls(2, counted.usec)


def test_the_report_shows_the_redis_gateways_script_calls_per_answer_and_no_others() -> None:
    result = LoadResult(1000, 2.0, 0, "", {}, 1.0, 2.0, 3.0, 4.0)
    runs = [
        Run("sqlite", "json", 32, [Slice(result, 0.2)]),
        Run("redis", "json", 32, [Slice(result, 0.2, redis=ScriptCalls(140, 35_000))]),
        Run("redis@2w", "json", 32, [Slice(result, 0.2, redis=ScriptCalls(290, 45_000))]),
    ]
    assert runs[2].as_dict()["redis_script_calls_per_request"] == 0.29
    text = report.render(report.Results(runs, [], [], None), Options(2.0, 1, (32,), 0), None)
    assert "json c=32: redis 0.140 (35 us), redis@2w 0.290 (45 us)" in text.splitlines()


def test_no_limits_makes_keys_the_limiter_never_sees(upstream: Upstream) -> None:
    with running_gateway(upstream.backends, None, dict(NO_LIMITS_ENV)) as gateway:
        gateway.create_keys(["limited"])
        gateway.create_keys(["free"], limits=False)
        with closing(sqlite3.connect(gateway.database)) as db:
            rows = {
                name: limits
                for name, *limits in db.execute(
                    "SELECT name, daily_requests, rpm, daily_tokens, max_concurrency FROM api_keys"
                )
            }
    assert rows == {
        "bench-limited": [int(value) for value in KEY_LIMITS.values()],
        "bench-free": [None, None, None, None],
    }
