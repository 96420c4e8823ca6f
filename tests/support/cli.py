"""The `vllm-gateway` command line, run in this process with an environment of its own.

Starting a Python process that imports the gateway costs a second or more of CPU on this
machine, and the CLI tests run hundreds of commands; click's CliRunner invokes the very same
command objects the console script does, with its own environment, standard input and
output, and the exit code a shell would see. The entry point itself (`python -m
vllm_gateway`) is run as a real subprocess by `run_entry_point` and the tests that use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from vllm_gateway.cli import cli as command_line

# The settings a command may read from the environment: a test gives them explicitly.
OWN_PREFIXES = ("DATABASE_", "REDIS_", "GATEWAY_", "VLLM_")


@dataclass(frozen=True)
class CliResult:
    """What a shell would see of one command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Cli:
    """Runs commands with DATABASE_URL (and any other settings given) set, in `workdir`."""

    def __init__(self, database_url: str, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.settings = {"DATABASE_URL": database_url, **settings}

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> CliResult:
        # Unset every gateway setting of this process, then set the test's own.
        env: dict[str, str | None] = {
            name: None for name in os.environ if name.startswith(OWN_PREFIXES)
        }
        env.update(self.settings)
        runner = CliRunner(env=env)
        environment = dict(os.environ)  # a command may set variables (serve does, for uvicorn)
        try:
            with contextlib.chdir(self.workdir):  # away from any .env in the repository
                outcome = runner.invoke(
                    command_line, list(args), input=input, catch_exceptions=True
                )
        finally:
            os.environ.clear()
            os.environ.update(environment)
        if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
            raise outcome.exception  # a traceback is a failure of the test, never an exit 1
        result = CliResult(tuple(args), outcome.exit_code, outcome.stdout, outcome.stderr)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


def run_entry_point(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m vllm_gateway ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "vllm_gateway", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
