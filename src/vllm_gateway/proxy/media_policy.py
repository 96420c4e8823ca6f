"""The media URL policy: a tenant may not make the GPU host fetch what it should not reach.

vLLM downloads the `image_url`, `audio_url`, `video_url` (and Responses `input_image`,
Anthropic `source.url`) URLs in a request itself, from its own network position: without
a guard, any tenant could make it fetch internal addresses (cloud metadata, admin
consoles, other services). GATEWAY_MEDIA_URLS decides what content parts may name:

- `data-only`: inline `data:` URLs only;
- `public` (the default): `data:` URLs, and http(s) URLs whose host is a public address:
  checked on the literal (IPv4, IPv6, and IPv4 embedded in IPv6) and on every address the
  host resolves to (so a name pointing at 127.0.0.1 is refused too); a host that does not
  resolve is refused, since the gateway cannot vouch for it;
- `any`: no check (vLLM's own `--allowed-media-domains` is then the only guard).

GATEWAY_MEDIA_DOMAINS (`example.com,*.cdn.example.com`) further limits http(s) URLs to
those hosts. A refused URL is a 400 `media_url_not_allowed` naming the field.
vLLM resolves the name again when it fetches; pair this with vLLM's own
`--allowed-media-domains` (and no redirects) where DNS answers cannot be trusted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.policy import Policy
from vllm_gateway.proxy.routes import Route

MEDIA_KEYS = frozenset({"image_url", "audio_url", "video_url", "file_url"})
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
BLOCKED_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal"})
_MAX_DEPTH = 64
_RESOLVE_TIMEOUT = 3.0
_VERDICT_TTL = 60.0
_VERDICTS = 10_000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def media_urls(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """(field path, URL) of every media URL in a messages/input structure."""
    if depth > _MAX_DEPTH:
        raise GatewayError(400, f"{path} is nested too deeply", "invalid_request", param=path)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                yield from media_urls(item, f"{path}[{index}]", depth + 1)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in MEDIA_KEYS:
            if isinstance(item, str):
                yield where, item
            elif isinstance(item, dict) and isinstance(item.get("url"), str):
                yield f"{where}.url", item["url"]
        elif key == "source" and isinstance(item, dict) and item.get("type") == "url":
            if isinstance(item.get("url"), str):
                yield f"{where}.url", item["url"]
        elif isinstance(item, dict | list):
            yield from media_urls(item, where, depth + 1)


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally reachable, looking through IPv6 embeddings of IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def _refused(param: str, why: str) -> GatewayError:
    return GatewayError(400, f"{param}: {why}", "media_url_not_allowed", param=param)


def _domain_allowed(host: str, domains: tuple[str, ...]) -> bool:
    for domain in domains:
        if domain.startswith("*."):
            if host.endswith(domain[1:]) and host != domain[2:]:
                return True
        elif host == domain:
            return True
    return False


class HostVerdicts:
    """Whether hostnames resolve only to public addresses, remembered for a minute."""

    def __init__(self) -> None:
        self._verdicts: dict[str, tuple[str | None, float]] = {}

    async def why_not(self, host: str) -> str | None:
        """None when the host is public; else why it is refused."""
        try:
            return None if is_public(ipaddress.ip_address(host)) else "not a public address"
        except ValueError:
            pass  # a name, not an address literal
        name = host.rstrip(".").lower()
        if name in BLOCKED_NAMES or name.endswith(BLOCKED_SUFFIXES):
            return "a local or internal host name"
        cached = self._verdicts.get(name)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        verdict = await self._resolve(name)
        if len(self._verdicts) >= _VERDICTS:
            self._verdicts.clear()
        self._verdicts[name] = (verdict, time.monotonic() + _VERDICT_TTL)
        return verdict

    async def _resolve(self, name: str) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), _RESOLVE_TIMEOUT
            )
        except (OSError, TimeoutError, UnicodeError):
            return "the host name does not resolve"
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if not is_public(address):
                return "the host name resolves to an address that is not public"
        return None


class MediaPolicy(Policy):
    """Checks the media URLs of chat, responses and messages requests."""

    def __init__(self, mode: str, domains: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self.domains = tuple(domain.strip().lower() for domain in domains if domain.strip())
        self._hosts = HostVerdicts()

    def applies_to(self, route: Route) -> bool:
        """Routes whose content parts may name URLs, unless every URL is allowed."""
        return route.media_field is not None and (self.mode != "any" or bool(self.domains))

    async def on_request(self, ctx: RequestContext) -> None:
        """400 media_url_not_allowed for the first URL the policy refuses."""
        body, field = ctx.body, ctx.route.media_field
        if body is None or body.payload is None or field is None or b"url" not in body.raw:
            return
        for param, url in media_urls(body.payload.get(field), field):
            why = await self.why_not(url)
            if why is not None:
                raise _refused(param, why)

    async def why_not(self, url: str) -> str | None:
        """None when the URL may be fetched; else why not."""
        if url[:5].lower() == "data:":
            return None
        if self.mode == "data-only":
            return "only data: URLs are allowed here"
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
        except ValueError:
            return "not a valid URL"
        if parts.scheme.lower() not in ("http", "https"):
            return "only data:, http and https URLs are allowed"
        if not host:
            return "the URL names no host"
        if self.domains and not _domain_allowed(host.lower().rstrip("."), self.domains):
            return "the host is not on the list of allowed media domains"
        if self.mode == "any":
            return None
        return await self._hosts.why_not(host)
