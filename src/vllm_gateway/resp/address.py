"""Where Redis is and how to log in, from REDIS_URL (redis://, rediss:// or unix://).

    redis://[[user]:password@]host[:port][/db]   TCP, port 6379 when left out
    rediss://…                                   the same over TLS (ssl_cert_reqs=none|
                                                 optional|required, ssl_ca_certs=<file>)
    unix:///path/to/redis.sock[?db=N]            a Unix socket

A URL the client cannot follow is a ValueError naming what is wrong, raised when the
settings are read, never at the first request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT = 6379
_QUERY = {"db", "ssl_cert_reqs", "ssl_ca_certs"}
_CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


@dataclass(frozen=True)
class Endpoint:
    """One server to connect to: a host and port, or a Unix socket's path."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    path: str | None = None
    tls: ssl.SSLContext | None = None

    def __str__(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Login:
    """What is sent on every new connection before its first command."""

    username: str | None = None
    password: str | None = None
    db: int = 0


def parse_url(url: str) -> tuple[Endpoint, Login]:
    """REDIS_URL read into its endpoint and login; ValueError if the client cannot use it."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"REDIS_URL: the scheme must be redis, rediss or unix, not {parts.scheme!r}"
        )
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - _QUERY)
    if unknown:
        known = ", ".join(sorted(_QUERY))
        raise ValueError(f"REDIS_URL: unknown option {unknown[0]!r} (known: {known})")
    db_text = query.get("db")
    if db_text is None and parts.scheme != "unix":
        db_text = parts.path.strip("/")  # redis://host/2; a socket's path is its path
    try:
        db = int(db_text or 0)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("REDIS_URL: the port and the database number must be numbers") from None
    login = Login(
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        db=db,
    )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(
                "REDIS_URL: unix:// needs the socket's path, e.g. unix:///run/redis.sock"
            )
        return Endpoint(path=parts.path), login
    tls = _tls(query) if parts.scheme == "rediss" else None
    return Endpoint(host=parts.hostname or "localhost", port=port, tls=tls), login


def _tls(query: dict[str, str]) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"REDIS_URL: cannot read ssl_ca_certs: {exc}") from None
    wanted = query.get("ssl_cert_reqs", "required").lower()
    if wanted not in _CERT_REQS:
        raise ValueError("REDIS_URL: ssl_cert_reqs must be none, optional or required")
    if _CERT_REQS[wanted] != ssl.CERT_REQUIRED:
        context.check_hostname = False
    context.verify_mode = _CERT_REQS[wanted]
    return context
