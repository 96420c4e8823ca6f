"""The fixed-cost upstream: Debian's nginx answering vLLM-shaped bodies from memory."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import payloads
from bench.procs import free_port, stop, wait_for_port

NGINX = "/usr/sbin/nginx"


@dataclass(frozen=True)
class Upstream:
    """Where the two nginx servers listen and which process runs them."""

    json_port: int
    stream_port: int
    pid: int

    @property
    def json_url(self) -> str:
        """Base URL (with /v1) of the server answering whole JSON completions."""
        return f"http://127.0.0.1:{self.json_port}/v1"

    @property
    def stream_url(self) -> str:
        """Base URL (with /v1) of the server answering server-sent-event streams."""
        return f"http://127.0.0.1:{self.stream_port}/v1"

    @property
    def json_base(self) -> str:
        """The JSON server's origin, without /v1 (what the bare proxy is given)."""
        return f"http://127.0.0.1:{self.json_port}"

    @property
    def stream_base(self) -> str:
        """The streaming server's origin, without /v1."""
        return f"http://127.0.0.1:{self.stream_port}"

    @property
    def backends(self) -> str:
        """Both servers as a gateway's VLLM_URL."""
        return f"{self.json_url},{self.stream_url}"


def _quoted(body: bytes) -> str:
    """An nginx single-quoted string literal holding `body` exactly."""
    text = body.decode()
    # nginx would expand `$name` in a `return` text and has no escape for it.
    assert "$" not in text, "nginx return text cannot hold a dollar sign"
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def _server(port: int, model: str, root: Path, answer_type: str) -> str:
    # The answer is a static file (an nginx string literal is capped at 4 KiB); the static
    # module refuses POST with 405, which error_page turns into a GET of the same file.
    return f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location = /health {{ return 200 ''; }}
        location = /v1/models {{
            default_type application/json;
            return 200 {_quoted(payloads.models_body(model))};
        }}
        location = /v1/chat/completions {{
            default_type {answer_type};
            error_page 405 =200 $uri;
            # Only what vLLM (uvicorn) sends: no file validators, no ranges.
            etag off;
            max_ranges 0;
            add_header Last-Modified "";
        }}
        location / {{ return 404 ''; }}
    }}
"""


def _site(directory: Path, name: str, answer: bytes) -> Path:
    root = directory / name
    (root / "v1" / "chat").mkdir(parents=True)
    (root / "v1" / "chat" / "completions").write_bytes(answer)
    for path in (root, root / "v1", root / "v1" / "chat"):
        path.chmod(0o755)
    return root


def nginx_config(directory: Path, json_port: int, stream_port: int) -> str:
    """One master, one worker, two servers: whole JSON answers and SSE streams."""
    temp = directory / "temp"
    json_root = _site(directory, "json", payloads.completion_body(payloads.JSON_MODEL))
    stream_root = _site(directory, "stream", payloads.sse_body(payloads.STREAM_MODEL))
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_buffer_size 64k;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;
    sendfile on;
    tcp_nodelay on;
{_server(json_port, payloads.JSON_MODEL, json_root, "application/json")}
{_server(stream_port, payloads.STREAM_MODEL, stream_root, "text/event-stream")}
}}
"""


def nginx_binary() -> str:
    """The nginx executable, or a clear error naming the package to install."""
    found = shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)
    if found is None:
        raise RuntimeError("nginx is missing: apt-get install -y nginx-light")
    return found


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    """Run nginx as a non-daemon child on two free loopback ports for the duration."""
    with tempfile.TemporaryDirectory(prefix="vgw-bench-nginx-") as name:
        directory = Path(name)
        directory.chmod(0o755)  # nginx workers drop root and still read below it
        (directory / "temp").mkdir()
        json_port, stream_port = free_port(), free_port()
        config = directory / "nginx.conf"
        config.write_text(nginx_config(directory, json_port, stream_port))
        stderr = directory / "stderr.log"
        with stderr.open("wb") as output:
            process = subprocess.Popen(
                [
                    nginx_binary(),
                    "-p",
                    str(directory),
                    "-e",
                    str(directory / "error.log"),
                    "-c",
                    str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=output,
            )
        try:
            try:
                wait_for_port(json_port, process)
                wait_for_port(stream_port, process)
            except RuntimeError as exc:
                stop(process, timeout=10)
                raise RuntimeError(f"{exc}: {stderr.read_text().strip()}") from None
            yield Upstream(json_port, stream_port, process.pid)
        finally:
            stop(process, timeout=10)
