"""The README's commands, run as written against `vllm-gateway serve --demo`, so the docs
cannot drift: every ```bash and ```python block runs, except the few listed in SKIPPED."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Process, cli_env, start_on_free_port

README = Path(__file__).resolve().parent.parent / "README.md"
VENV_BIN = Path(sys.executable).parent

# Blocks not run here, by the start of their first line, and why.
SKIPPED = {
    "make run": "starts what the test starts itself (`serve --demo`)",
    "vllm serve": "needs a GPU and a model",
    ".venv/bin/vllm-gateway serve --demo": "servers that run until stopped; the test runs one",
    "make check": "the development tools, run by CI itself",
}
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    """The README's (language, text) blocks, in order."""
    return [(match[1], match[2]) for match in BLOCK.finditer(README.read_text())]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, str, Path]]:
    """`serve --demo` on a free port with its own database; (process, admin key, directory)."""
    directory = tmp_path_factory.mktemp("readme")
    admin_key = "admin-" + secrets.token_hex(16)
    env = cli_env(
        DATABASE_PATH=str(directory / "gateway.db"),
        GATEWAY_ADMIN_KEY=admin_key,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_JOURNAL_DIR=str(directory / "journal"),
    )
    process = start_on_free_port(
        lambda port: ["serve", "--demo", "--port", str(port)],
        env,
        directory / "demo.log",
        "/readyz",
    )
    try:
        yield process, admin_key, directory
    finally:
        process.stop()


def _as_here(text: str, url: str) -> str:
    """The block with this test's gateway and virtual environment in place of the usual ones."""
    return text.replace("http://localhost:8001", url).replace(".venv/bin/", f"{VENV_BIN}/")


def test_every_skipped_block_still_exists() -> None:
    firsts = [text.lstrip().splitlines()[0] for _, text in blocks()]
    for start_of_line in SKIPPED:
        assert any(first.startswith(start_of_line) for first in firsts), start_of_line


# A dozen CLI commands, each a fresh Python process importing the gateway: slow on a busy machine.
@pytest.mark.timeout(300)
def test_readme_commands_work_as_written(demo: tuple[Process, str, Path]) -> None:
    process, admin_key, directory = demo
    banner = process.log.read_text()
    assert f"open {process.url}/login" in banner
    env = cli_env(
        DATABASE_PATH=str(directory / "gateway.db"),
        GATEWAY_JOURNAL_DIR=str(directory / "cli-journal"),
        ADMIN_KEY=admin_key,
        # What `admin users create` asks for, as a reader would type it at the prompt.
        GATEWAY_NEW_ADMIN_PASSWORD="correct horse battery staple",
    )
    # One shell for all bash blocks, as a reader typing them into one terminal; the key
    # the first block keeps in KEY is exported for the Python blocks.
    script = ["set -euo pipefail"]
    ran = 0
    for language, text in blocks():
        first = text.lstrip().splitlines()[0]
        if any(first.startswith(skipped) for skipped in SKIPPED):
            continue
        body = _as_here(text, process.url)
        if language == "bash":
            script += [f"echo '>>> block {ran}' >&2", body, "export KEY"]
        else:
            file = directory / f"block{ran}.py"
            file.write_text(body)
            script += [f"echo '>>> block {ran}' >&2", f"{sys.executable} {file}"]
        ran += 1
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert ran >= 5
    output = result.stdout
    # What the examples show really happened: answers, a stream, usage on the books.
    assert '"object":"chat.completion"' in output.replace(" ", "")
    assert "data: [DONE]" in output
    assert '"name":"bob"' in output.replace(" ", "")
    report = json.loads(output[output.index("{\n") : output.index("\n}\n") + 2])
    assert report["requests"] >= 3
    assert "day,key_id,model,requests" in output
    assert '"error"' not in output
