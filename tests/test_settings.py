"""Settings: defaults, environment names, and clear start-up errors for bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from vllm_gateway.settings import Settings


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_follow_the_design() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.backend_urls == ["http://localhost:8000/v1"]
    assert settings.gateway_port == 8001
    assert settings.sqlalchemy_url == "sqlite+aiosqlite:///./gateway.db"


def test_several_backends_and_postgres_urls() -> None:
    settings = make(
        vllm_url="http://a:8000/v1, http://b:8000/v1/",
        database_url="postgresql://u@db/gw",
    )
    assert settings.backend_urls == ["http://a:8000/v1", "http://b:8000/v1"]
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@db/gw"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://a/v1", "must start with http:// or https://"),
        ("http:///v1", "names no host"),
        ("http://user:s3cret@a:8000/v1", "must not hold credentials"),
    ],
)
def test_a_backend_url_the_gateway_cannot_use_is_refused_at_start(url: str, said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make(vllm_url=f"http://ok:8000/v1,{url}")
    message = refused.value.errors()[0]["msg"]  # what `serve` prints (settings_loader.py)
    assert said in message and "s3cret" not in message


def test_sentinels_stand_in_for_a_redis_url() -> None:
    settings = make(redis_sentinels=" 10.0.0.1:26380, sentinel-b ", gateway_workers=2)
    assert settings.sentinel_addresses == [("10.0.0.1", 26380), ("sentinel-b", 26379)]
    assert settings.uses_redis and settings.redis_url is None
    assert not make(redis_sentinels=" ").uses_redis


@pytest.mark.parametrize(
    "values",
    [
        {"vllm_url": "localhost:8000"},
        {"vllm_url": " , "},
        {"gateway_port": 70000},
        {"database_url": "mysql://x/y"},
        {"gateway_workers": 2},
        {"gateway_log_level": "loud"},
        {"gateway_max_body_bytes": 0},
        {"redis_sentinels": "10.0.0.1:26379,10.0.0.2:port"},
        {"redis_sentinels": ":26379"},
        {"redis_sentinels": "10.0.0.1:99999"},
        {"redis_url": "http://127.0.0.1:6379"},
        {"redis_url": "redis://127.0.0.1:6379/?socket_timeout=2"},
    ],
)
def test_invalid_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make(**values)


def test_redis_urls_are_kept_when_the_client_can_follow_them() -> None:
    for url in ("redis://:pw@10.0.0.5:6380/2", "rediss://r.example?ssl_cert_reqs=none"):
        assert make(redis_url=url).redis_url == url
    assert make(redis_url=" ").redis_url is None


def test_serve_names_the_bad_variable_and_exits_non_zero(tmp_path: object) -> None:
    env = {**os.environ, "GATEWAY_PORT": "not-a-port", "DATABASE_PATH": f"{tmp_path}/g.db"}
    result = subprocess.run(
        [sys.executable, "-m", "vllm_gateway", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "GATEWAY_PORT" in result.stderr
    assert "Traceback" not in result.stderr
