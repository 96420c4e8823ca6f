"""Open the upstream request: headers we send, failover, one retry on a stale connection."""

from __future__ import annotations

import aiohttp

from vllm_gateway.backends import Backend, BackendPool
from vllm_gateway.errors import GatewayError

# Request headers passed on from the client; everything else (credentials, cookies,
# hop-by-hop headers, X-Request-Id, vLLM's scheduling knobs) stays behind.
FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"accept", b"user-agent"})

# Response headers the gateway sets itself or that must not cross a proxy.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "server",
        "date",
        "x-request-id",
        "set-cookie",
        "www-authenticate",
    }
)


def response_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    """The backend's response headers that may reach the client."""
    return [
        (name.lower(), value)
        for name, value in response.raw_headers
        if name.decode("latin-1").lower() not in DROPPED_RESPONSE_HEADERS
    ]


async def open_upstream(
    pool: BackendPool,
    candidates: list[Backend],
    method: str,
    path_and_query: str,
    body: bytes,
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
) -> tuple[Backend, aiohttp.ClientResponse]:
    """Send the request to the first backend that takes it; 502/503/504 when none does."""
    if not candidates:
        raise GatewayError(503, "no backend is available", "backend_unavailable")
    last_error: GatewayError | None = None
    for backend in candidates:
        url = backend.base_url + path_and_query
        for attempt in (1, 2):
            try:
                response = await pool.session.request(
                    method,
                    url,
                    data=body or None,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                )
                return backend, response
            except aiohttp.ClientConnectorError:
                pool.metrics.backend_error(backend.name, "connect")
                backend.healthy = False
                last_error = GatewayError(
                    502, "the backend could not be reached", "backend_unreachable"
                )
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A pooled connection the server had already closed: try once more.
                pool.metrics.backend_error(backend.name, "disconnect")
                last_error = GatewayError(502, "the backend closed the connection", "backend_error")
                if attempt == 2:
                    break
            except (TimeoutError, aiohttp.ServerTimeoutError):
                pool.metrics.backend_error(backend.name, "timeout")
                raise GatewayError(
                    504, "the backend did not answer in time", "backend_timeout"
                ) from None
            except aiohttp.ClientError:
                pool.metrics.backend_error(backend.name, "client")
                last_error = GatewayError(502, "the backend request failed", "backend_error")
                break
    assert last_error is not None
    raise last_error
