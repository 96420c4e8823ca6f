"""deploy/nginx/vllm-gateway.conf as shipped, in a real nginx with TLS, in front of two gateway
instances sharing PostgreSQL and Redis, behind which a `vllm-gateway simulator` process runs.

Through nginx: limits are exact across the instances, the books hold every answer, streams
arrive event by event, a revoked key stops at once on both instances, and the admin session
cookie is `Secure` (the instances believe nginx's X-Forwarded-Proto, and only nginx's).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.procs import stop, wait_for_port
from bench.upstream import nginx_binary

from tests.support.books import hammer, recorded
from tests.support.databases import fresh_postgres
from tests.support.processes import Process, cli_env, start, start_gateway
from tests.support.redis_server import private_redis
from tests.support.servers import free_port

DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "vllm-gateway.conf"
BACKEND_KEY = "nginx-backend-" + "k" * 20
ADMIN_KEY = "nginx-admin-" + "a" * 24
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Stack:
    nginx: str  # https://127.0.0.1:PORT
    nginx_http: str
    tls: ssl.SSLContext  # trusts the test's own certificate
    gateways: list[Process]
    postgres_url: str

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.nginx, verify=self.tls, headers=headers)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    certificate, key = directory / "gateway.pem", directory / "gateway.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


def deployed_site(
    upstreams: list[str], http_port: int, https_port: int, cert: Path, key: Path
) -> str:
    """The shipped configuration with this test's ports, instances and certificate."""
    site = DEPLOYED.read_text()
    servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+ max_fails=0;.*$", site, flags=re.M)
    assert len(servers) == 2, "the shipped upstream block changed shape"
    site = site.replace(servers[1] + "\n", "")
    site = site.replace(
        servers[0], "\n".join(f"    server {address} max_fails=0;" for address in upstreams)
    )
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/ssl/certs/gateway.example.com.pem": str(cert),
        "/etc/ssl/private/gateway.example.com.key": str(key),
    }
    for shipped, ours in replacements.items():
        assert shipped in site, shipped
        site = site.replace(shipped, ours)
    return site


def nginx_main(directory: Path, site: Path) -> str:
    temp = directory / "temp"
    return f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("nginx")
    directory.chmod(0o755)  # nginx's worker drops root and still reads below it
    (directory / "temp").mkdir()
    backend_port = free_port()
    backend = start(
        ["simulator", "--port", str(backend_port), "--model", "sim-model",
         "--tokens-per-second", "40"],
        cli_env(VLLM_API_KEY=BACKEND_KEY), directory / "simulator.log", backend_port,
    )  # fmt: skip
    nginx: subprocess.Popen[bytes] | None = None
    gateways: list[Process] = []
    try:
        backend.wait_ready("/health")
        with fresh_postgres() as postgres_url, private_redis() as redis:
            try:
                gateways = [
                    start_gateway(
                        directory, f"gateway{n}", backend_url=f"{backend.url}/v1",
                        backend_key=BACKEND_KEY, database_url=postgres_url,
                        admin_key=ADMIN_KEY, redis_url=redis.url(), trusted_proxies="127.0.0.1",
                        usage_flush_interval="0.2", log_level="warning",
                    )
                    for n in range(2)
                ]  # fmt: skip
                http_port, https_port = free_port(), free_port()
                cert, key = self_signed_certificate(directory)
                upstreams = [gateway.url.removeprefix("http://") for gateway in gateways]
                site = directory / "site.conf"
                site.write_text(deployed_site(upstreams, http_port, https_port, cert, key))
                config = directory / "nginx.conf"
                config.write_text(nginx_main(directory, site))
                nginx = subprocess.Popen(
                    [nginx_binary(), "-p", str(directory), "-e", str(directory / "error.log"),
                     "-c", str(config)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                wait_for_port(https_port, nginx)
                yield Stack(
                    nginx=f"https://127.0.0.1:{https_port}",
                    nginx_http=f"http://127.0.0.1:{http_port}",
                    tls=ssl.create_default_context(cafile=str(cert)),
                    gateways=gateways,
                    postgres_url=postgres_url,
                )
            finally:  # before the database is dropped
                if nginx is not None:
                    stop(nginx, timeout=10)
                for gateway in gateways:
                    gateway.stop()
    finally:
        backend.stop()


def create_key(stack: Stack, **fields: object) -> tuple[str, str]:
    with stack.client(**ADMIN) as admin:
        created = admin.post("/api/v1/keys", json={"name": "through nginx", **fields})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


def test_plain_http_is_sent_to_https(stack: Stack) -> None:
    response = httpx.get(f"{stack.nginx_http}/v1/models")
    assert response.status_code == 308
    assert response.headers["location"].startswith("https://")


def test_limits_are_exact_and_the_books_complete_across_both_instances(stack: Stack) -> None:
    daily, attempts = 25, 80
    key_id, key = create_key(stack, daily_requests=daily)
    results = asyncio.run(hammer([stack.nginx], key, attempts, 16, verify=stack.tls))
    statuses = [status for status, _, _ in results]
    assert (statuses.count(200), statuses.count(429)) == (daily, attempts - daily)
    prompt = sum(p for status, p, _ in results if status == 200)
    completion = sum(c for status, _, c in results if status == 200)
    # Both instances served (nginx balanced them), so exactness was shared, not local.
    served_by = [
        httpx.get(f"{gateway.url}/metrics", headers=ADMIN).text.count(f'key_id="{key_id}"')
        for gateway in stack.gateways
    ]
    assert all(served_by), served_by

    # Each instance writes its own batches: wait for the last of both (served and refused).
    def complete(found: dict[str, Any]) -> bool:
        return bool(found["events"]["n"] >= daily and found["refusals"]["n"] >= attempts - daily)

    deadline = time.monotonic() + 10
    while not complete(found := asyncio.run(recorded(stack.postgres_url, key_id))):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found["events"] == {"n": daily, "ids": daily, "p": prompt, "c": completion, "failed": 0}
    assert found["refusals"]["n"] == attempts - daily


def test_streams_are_relayed_event_by_event(stack: Stack) -> None:
    _, key = create_key(stack)
    body = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "count slowly"}],
        "max_tokens": 30,  # at 40 tokens per second, up to 0.75 s
        "stream": True,
    }
    arrivals: list[float] = []
    began = time.monotonic()
    with (
        stack.client(authorization=f"Bearer {key}") as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - began)
    assert len(arrivals) >= 12, arrivals  # the simulator may end an answer early (stop)
    # Buffered, every event would arrive at once at the end; relayed, they are spread out.
    assert arrivals[-1] - arrivals[1] > 0.2, arrivals
    assert arrivals[1] < arrivals[-1] / 2, arrivals


def test_a_revoked_key_stops_at_once_on_both_instances(stack: Stack) -> None:
    key_id, key = create_key(stack)
    bearer = {"authorization": f"Bearer {key}"}
    for gateway in stack.gateways:  # each instance has the key in its cache now
        assert httpx.get(f"{gateway.url}/v1/models", headers=bearer).status_code == 200
    with stack.client(**ADMIN) as admin:
        assert admin.post(f"/api/v1/keys/{key_id}/revoke").status_code == 200
    deadline = time.monotonic() + 2
    for gateway in stack.gateways:
        while (status := httpx.get(f"{gateway.url}/v1/models", headers=bearer).status_code) == 200:
            assert time.monotonic() < deadline, f"{gateway.url} still serves a revoked key"
            time.sleep(0.02)
        assert status in (401, 403)
    with stack.client(**bearer) as client:
        assert client.get("/v1/models").status_code in (401, 403)


def test_the_session_cookie_is_secure_behind_tls_and_only_there(stack: Stack) -> None:
    form = {"admin_key": ADMIN_KEY, "next": "/dashboard"}
    with stack.client() as client:
        through_tls = client.post("/login", data=form)
    assert through_tls.status_code == 303, through_tls.text
    cookie = through_tls.headers["set-cookie"]
    assert "secure" in cookie.lower() and "httponly" in cookie.lower()
    # Straight to an instance over plain HTTP, with no nginx to say "https", it is not Secure:
    # the flag follows the scheme nginx reports.
    direct = httpx.post(f"{stack.gateways[0].url}/login", data=form)
    assert direct.status_code == 303
    assert "secure" not in direct.headers["set-cookie"].lower()
