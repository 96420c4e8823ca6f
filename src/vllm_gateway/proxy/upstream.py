"""Open the upstream request: the headers sent and kept, failover, one retry on a stale connection.

Both directions are allowlists. Towards the backend: the content type, Accept and
User-Agent of the client, the gateway's own request id and the backend's key; never the
client's credentials, cookies, hop-by-hop headers or vLLM's scheduling headers. Back to the
client: the content type and Retry-After; nothing else a backend sets (CORS, cookies,
caching, server banners) crosses the gateway.

The URL is sent exactly as the gateway built it from checked parts (`encoded=True`): no
client-supplied path segment is normalised into another route.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from vllm_gateway.errors import GatewayError
from vllm_gateway.routing.pool import Backend, BackendPool

FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"accept", b"user-agent"})
KEPT_RESPONSE_HEADERS = frozenset({b"content-type", b"retry-after"})


def response_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    """The backend's response headers that may reach the client."""
    kept = []
    for name, value in response.raw_headers:
        lower = name.lower()
        if lower in KEPT_RESPONSE_HEADERS:
            kept.append((lower, value))
    return kept


async def open_upstream(
    pool: BackendPool,
    candidates: list[Backend],
    method: str,
    path_and_query: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[Backend, aiohttp.ClientResponse]:
    """Send the request to the first backend that takes it; 502/503/504 when none does."""
    if not candidates:
        raise GatewayError(503, "no backend is available", "backend_unavailable")
    last_error: GatewayError | None = None
    for backend in candidates:
        url = URL(backend.base_url + path_and_query, encoded=True)
        for attempt in (1, 2):
            try:
                response = await pool.session.request(
                    method,
                    url,
                    data=body or None,
                    headers=headers,
                    timeout=pool.request_timeout,
                    allow_redirects=False,
                )
                if response.status < 500 and not backend.healthy:
                    backend.healthy = True  # it answers: back at once, not a probe later
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
            except TimeoutError:  # aiohttp.ServerTimeoutError included
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
