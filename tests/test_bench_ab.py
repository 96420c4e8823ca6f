"""A/B runs: the baseline is checked out and installed once, and each side is audited alone."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from bench import baseline, report
from bench.gateway import CLI
from bench.load import LoadResult
from bench.run import open_targets, sides
from bench.streaming import StreamOptions, StreamRun, StreamSlice
from bench.suite import GatewayPhase, Options, Run, Slice, finish_gateway, measure_ttfb
from bench.upstream import Upstream


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "ab"
    # Forget the worktrees made here, so that the repository's list stays as it was.
    for tree in (tmp_path / "ab").glob("*/tree"):
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)],
            cwd=baseline.REPOSITORY,
            check=True,
        )


def test_a_ref_is_checked_out_once_as_a_worktree_at_its_commit(cache: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=baseline.REPOSITORY, capture_output=True, text=True
    ).stdout.strip()
    sha, tree = baseline.checkout("HEAD", cache)
    assert (sha, tree) == (head, cache / head / "tree")
    assert (tree / "pyproject.toml").exists() and (tree / "src" / "vllm_gateway").is_dir()
    listed = subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=baseline.REPOSITORY,
        capture_output=True,
        text=True,
    ).stdout
    assert f"worktree {tree}\nHEAD {head}\ndetached" in listed
    (tree / "marker").write_text("kept")
    assert baseline.checkout(head[:10], cache) == (head, tree)  # reused, not checked out anew
    assert (tree / "marker").read_text() == "kept"
    with pytest.raises(RuntimeError, match="rev-parse"):
        baseline.checkout("no-such-ref-anywhere", cache)


def test_the_baseline_venv_is_built_once_and_reused(tmp_path: Path) -> None:
    # A tiny project standing in for the gateway: the same venv + pip install -e, in seconds.
    source = tmp_path / "project"
    (source / "tiny").mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny"\nversion = "0"\n'
        '[project.scripts]\nvllm-gateway = "tiny:main"\n'
    )
    (source / "tiny" / "__init__.py").write_text("def main() -> None:\n    print('tiny')\n")
    cli = baseline.venv_for(tmp_path / "built", source)
    assert cli == tmp_path / "built" / "venv" / "bin" / "vllm-gateway"
    assert subprocess.run([cli], capture_output=True, text=True).stdout == "tiny\n"
    (source / "pyproject.toml").unlink()  # a rebuild would fail now: it must not happen
    assert baseline.venv_for(tmp_path / "built", source) == cli


def _args(*argv: str) -> argparse.Namespace:
    from bench.run import parse_args

    return parse_args(["--no-bare", "--no-redis", "--no-streams", *argv])


def test_baseline_env_alone_runs_this_checkout_twice_with_another_setting() -> None:
    options = Options(1.0, 1, (2,), 5, gateway_env=(("GATEWAY_ACCESS_LOG", "off"),))
    found, label = sides(_args("--baseline-env", "GATEWAY_USAGE_FLUSH_INTERVAL=2"), options)
    assert [(side.suffix, side.cli) for side in found] == [("", CLI), ("@base", CLI)]
    assert found[0].env == (("GATEWAY_ACCESS_LOG", "off"),)
    assert found[1].env == (("GATEWAY_ACCESS_LOG", "off"), ("GATEWAY_USAGE_FLUSH_INTERVAL", "2"))
    assert label == "this checkout with GATEWAY_USAGE_FLUSH_INTERVAL=2"
    assert sides(_args(), options) == ([found[0]], None)


def test_tracing_traces_this_checkout_against_itself_untraced() -> None:
    from bench.run import tracing_env

    options = Options(1.0, 1, (2,), 5, gateway_env=(("GATEWAY_ACCESS_LOG", "off"),))
    tracing = tracing_env(4318)
    found, label = sides(_args("--tracing"), options, tracing)
    assert [(side.suffix, side.cli) for side in found] == [("", CLI), ("@base", CLI)]
    endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert found[0].env == (("GATEWAY_ACCESS_LOG", "off"), endpoint)
    assert found[1].env == (("GATEWAY_ACCESS_LOG", "off"),)
    assert label == "this checkout without tracing"
    assert tracing_env(None) == ()


def test_each_side_has_its_own_keys_and_database_and_is_audited_apart(upstream: Upstream) -> None:
    options = Options(seconds=1.0, rounds=1, connections=(2,), ttfb_rounds=4)
    args = _args("--baseline-env", "GATEWAY_ACCESS_LOG=off")
    found, _ = sides(args, options)
    with ExitStack() as stack:
        targets = open_targets(stack, upstream, None, options, None, found, args)
        assert [target.name for target in targets] == ["direct", "sqlite", "sqlite@base"]
        gateways = [target.gateway for target in targets[1:] if target.gateway is not None]
        assert gateways[1].env["GATEWAY_ACCESS_LOG"] == "off"
        assert "GATEWAY_ACCESS_LOG" not in gateways[0].env
        assert gateways[0].database != gateways[1].database
        # Streamed requests to both, interleaved; each side's rows must match its own count.
        ttfb = measure_ttfb(upstream.stream_port, targets[1:], options.ttfb_rounds)
        phases = [finish_gateway(target, [], ttfb, options) for target in targets[1:]]
    for phase, gateway in zip(phases, gateways, strict=True):
        assert [check.detail for check in phase.checks if not check.ok] == []
        assert set(phase.usage) == {gateway.keys["ttfb"][0]}
    assert gateways[0].keys["ttfb"][0] != gateways[1].keys["ttfb"][0]


def _wrk(requests: int, p50_ms: float = 1.0) -> LoadResult:
    return LoadResult(requests, 1.0, 0, "", {}, p50_ms, p50_ms, p50_ms, p50_ms)


def _streams(target: str, cpu: float) -> StreamRun:
    summary = {
        "streams": 4,
        "chunks_stamped": 40,
        "started_ns": 0,
        "ended_ns": 10**9,
        "delay_us": {"p50": 100.0, "p99": 200.0},
        "ttfc_ms": {"p50": 1.0},
        "per_stream": [],
    }
    return StreamRun(target, 4, 10, 50.0, [StreamSlice(summary, cpu, 50.1)], "key")


def test_the_report_shows_both_sides_per_store_and_their_cpu_ratio() -> None:
    runs = [
        Run(target, "json", 32, [Slice(_wrk(1000), cpu, preemptions=preempted)])
        for target, cpu, preempted in (
            ("direct", 0.01, 0),
            ("bare", 0.1, 20),
            ("sqlite", 0.2, 150),
            ("sqlite@base", 0.25, 900),
        )
    ]
    streams = [
        _streams(t, cpu) for t, cpu in (("bare", 0.001), ("sqlite", 0.002), ("sqlite@base", 0.002))
    ]
    ttfb = {"direct": {"ttfb_p50_ms": 0.1}, "gateway": {"ttfb_p50_ms": 0.5, "ttfb_p99_ms": 1.0}}
    ttfb["direct"]["ttfb_p99_ms"] = 0.2
    phases = [GatewayPhase(store, ttfb, idle_rss_mb=60.0) for store in ("sqlite", "sqlite@base")]
    text = report.render(
        report.Results(runs, streams, phases, "main (abc1234)"),
        Options(1.0, 1, (32,), 5),
        StreamOptions(streams=(4,), chunks=10),
    )
    assert "@base = the gateway of main (abc1234)" in text
    assert "json c=32       sqlite  us/req      200.00   250.00    0.800" in text
    assert "streams n=4     sqlite  us/chunk     50.00    50.00    1.000" in text
    assert "sqlite: json c=32 0.800, streams n=4 1.000" in text
    assert "json c=32: bare 0.02, sqlite 0.15, sqlite@base 0.90" in text
    assert (
        "CPU/JSON request vs bare, c=32  <= 1.3x        sqlite@base     2.500 x      MISSED" in text
    )
    assert max(len(line) for line in text.splitlines()) <= 100
