"""`bench/run.py --profile`: sample the gateway under load with py-spy; say where time goes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.bare_proxy import running_bare_proxy
from bench.gateway import running_gateway
from bench.load import LoadResult, run_wrk
from bench.suite import CHAT_PATH, KINDS, WARMUP_CONNECTIONS, WARMUP_SECONDS, Options, body_for
from bench.upstream import Upstream

OWN = "vllm_gateway/"
_BOOT = "vllm_gateway/cli/"  # the frames that start uvicorn sit under every sample
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r"(?:site-packages|lib/python3\.\d+)/")


@dataclass
class Profile:
    """Samples of one loaded run: collapsed stacks (outermost first) and their counts."""

    kind: str
    load: LoadResult
    stacks: Counter[tuple[str, ...]]
    raw_file: Path
    rate: int

    @property
    def samples(self) -> int:
        """How many samples the gateway was busy in."""
        return sum(self.stacks.values())


def py_spy_binary() -> str:
    """py-spy from the virtual environment or PATH, or a clear error."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("py-spy", path=search)
    if found is None:
        raise RuntimeError("py-spy is missing: .venv/bin/pip install py-spy")
    return found


def _frame(text: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame, without the line number."""
    match = _FRAME.match(text)
    if match is None:
        return text, ""
    return match["function"], _SITE.split(match["path"])[-1]


def read_raw(path: Path) -> Counter[tuple[str, ...]]:
    """Read py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = tuple(f"{f} ({p})" for f, p in map(_frame, stack.split(";")))
            stacks[frames] += int(count)
    return stacks


def record(
    url: str,
    pid: int,
    kind: str,
    seconds: float,
    rate: int,
    output: Path,
    key: str | None,
    gil: bool,
) -> Profile:
    """Load a target with 32 connections while py-spy samples its process."""
    body = body_for(kind)
    run_wrk(url, body, connections=WARMUP_CONNECTIONS, seconds=WARMUP_SECONDS, api_key=key)
    spy = subprocess.Popen(
        [
            py_spy_binary(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--duration",
            str(round(seconds)),
            "--format",
            "raw",
            "--nonblocking",
            *(["--gil"] if gil else []),
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    load = run_wrk(url, body, connections=32, seconds=seconds, api_key=key)
    _, errors = spy.communicate(timeout=seconds + 30)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {errors.decode().strip()}")
    return Profile(kind, load, read_raw(output), output, rate)


def _top(counter: Counter[str], total: int, limit: int) -> list[str]:
    return [f"  {count / total:6.1%}  {name}" for name, count in counter.most_common(limit)]


def summarise(profile: Profile, limit: int = 15) -> str:
    """Self time by package and by function, and time under each of our own functions."""
    total = profile.samples or 1
    by_package: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    own_inclusive: Counter[str] = Counter()
    own_deepest: Counter[str] = Counter()
    for stack, count in profile.stacks.items():
        leaf = stack[-1]
        by_leaf[leaf] += count
        by_package[_package(leaf)] += count
        own = [frame for frame in stack if OWN in frame and _BOOT not in frame]
        for frame in set(own):
            own_inclusive[frame] += count
        own_deepest[
            own[-1] if own else "(no own frame: event loop, uvicorn, aiohttp, threads)"
        ] += count
    load = profile.load
    lines = [
        f"{profile.kind} c=32: {load.rps:.0f} req/s under py-spy, {total} busy samples "
        f"({profile.raw_file})",
        "self time by package (leaf frame's top-level module):",
        *_top(by_package, total, limit),
        "self time by function:",
        *_top(by_leaf, total, limit),
        "time under each of our functions (inclusive):",
        *_top(own_inclusive, total, limit),
        "time by deepest own frame (what our code was waiting on or doing):",
        *_top(own_deepest, total, limit),
    ]
    return "\n".join(lines)


def _package(frame: str) -> str:
    path = frame.rpartition("(")[2].rstrip(")")
    return path.split("/")[0] if "/" in path else path or "?"


def compare(bare: Profile, gateway: Profile) -> str:
    """Sampled busy microseconds per answered request, by package: what the gateway adds."""

    def per_request(profile: Profile) -> Counter[str]:
        scale = 1e6 / profile.rate / max(profile.load.requests, 1)
        found: Counter[str] = Counter()
        for stack, count in profile.stacks.items():
            found[_package(stack[-1])] += count * scale
        return found

    bare_us, gateway_us = per_request(bare), per_request(gateway)
    lines = [
        f"{gateway.kind} c=32: sampled busy us per answered request, bare proxy vs gateway",
        f"  {'package':<28}{'bare':>8}{'gateway':>9}{'added':>8}",
    ]
    for package, _ in (gateway_us + bare_us).most_common(12):
        added = gateway_us[package] - bare_us[package]
        lines.append(
            f"  {package:<28}{bare_us[package]:>8.0f}{gateway_us[package]:>9.0f}{added:>8.0f}"
        )
    total_bare, total_gateway = sum(bare_us.values()), sum(gateway_us.values())
    lines.append(
        f"  {'total':<28}{total_bare:>8.0f}{total_gateway:>9.0f}{total_gateway - total_bare:>8.0f}"
    )
    return "\n".join(lines)


def profile_all(
    upstream: Upstream,
    options: Options,
    rate: int,
    directory: Path,
    stamp: str,
    gil: bool,
    redis_url: str | None = None,
) -> list[tuple[Profile, Profile]]:
    """(bare proxy, gateway) profiles of a JSON run and of a streaming run; the gateway's
    limits in Redis when redis_url is given."""
    directory.mkdir(parents=True, exist_ok=True)
    json_base, stream_base = upstream.json_base, upstream.stream_base
    backends = upstream.backends
    pairs = []
    with (
        running_bare_proxy(json_base, stream_base) as (port, bare_pid),
        running_gateway(backends, redis_url, dict(options.gateway_env)) as gateway,
    ):
        gateway.create_keys(["profile"])
        key = gateway.keys["profile"][1]
        for kind in KINDS:
            bare = record(
                f"http://127.0.0.1:{port}{CHAT_PATH}",
                bare_pid,
                kind,
                options.seconds,
                rate,
                directory / f"profile-{stamp}-{kind}-bare.txt",
                None,
                gil,
            )
            ours = record(
                gateway.url + CHAT_PATH,
                gateway.process.pid,
                kind,
                options.seconds,
                rate,
                directory / f"profile-{stamp}-{kind}-gateway.txt",
                key,
                gil,
            )
            pairs.append((bare, ours))
    return pairs
