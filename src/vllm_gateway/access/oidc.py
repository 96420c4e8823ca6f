"""OpenID Connect single sign-on for admin accounts: authorization code flow with PKCE.

The gateway is the relying party. /login/oidc sends the browser to the provider with a
random `state`, `nonce` and a PKCE S256 challenge (authlib's RFC 7636 helper); the
verifier, state, nonce and target travel in a short-lived, HMAC-signed, HttpOnly cookie
(SameSite=Lax, since the provider's redirect back is a cross-site navigation), so the
callback may land on any worker or instance. The callback exchanges the code (with the
verifier and the client secret) at the provider's token endpoint and verifies the ID
token (signature against the provider's JWKS, issuer, audience, expiry, nonce) with
joserfc.

Roles come from GATEWAY_OIDC_ROLES (access/role_rules.py), the first matching rule winning:
`group:NAME=ROLE` (a value of the ID token's `groups` claim) or `domain:example.com=ROLE`
(the verified email's domain); ROLE `team_manager:TEAM[+TEAM...]` names the teams. No
match: no access. The role is taken again at every login, so the provider stays in charge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from vllm_gateway.errors import GatewayError

if TYPE_CHECKING:
    import aiohttp  # imported when a login needs the provider: megabytes no worker needs else

COOKIE = "vgw_oidc"
COOKIE_TTL = 600  # seconds a login may take at the provider
_METADATA_TTL = 300.0
_TIMEOUT_SECONDS = 10


def _session() -> aiohttp.ClientSession:
    import aiohttp

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT_SECONDS))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(secret: bytes, payload: dict[str, Any]) -> str:
    """A signed cookie value carrying `payload`."""
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unseal(secret: bytes, value: str | None, now: float) -> dict[str, Any] | None:
    """The payload of a cookie made by seal(), if its signature holds and it has not expired."""
    if not value or len(value) > 4096 or "." not in value:
        return None
    body, _, mac = value.partition(".")
    expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        payload: dict[str, Any] = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    return payload if float(payload.get("exp", 0)) > now else None


def _failed(message: str) -> GatewayError:
    return GatewayError(401, f"Single sign-on failed: {message}", "sso_failed")


class OidcClient:
    """The relying party: talks to one provider (discovery, token endpoint, JWKS)."""

    def __init__(self, issuer: str, client_id: str, client_secret: str | None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = 0.0

    async def _get(self, session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        async with session.get(url) as answer:
            if answer.status != 200:
                raise _failed(f"the provider answered {answer.status} for {url}")
            data: dict[str, Any] = await answer.json(content_type=None)
            return data

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached for a few minutes)."""
        if self._metadata is None or time.monotonic() - self._fetched_at > _METADATA_TTL:
            import aiohttp

            try:
                async with _session() as session:
                    found = await self._get(
                        session, f"{self.issuer}/.well-known/openid-configuration"
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _failed(f"the provider is unreachable ({type(exc).__name__})") from None
            self._metadata, self._fetched_at = found, time.monotonic()
        return self._metadata

    async def start(self, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """(the provider's authorization URL, what the cookie must carry back)."""
        # Imported here: a gateway without single sign-on never loads them (~17 MiB).
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        metadata = await self.metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)  # 64 characters: within RFC 7636's 43-128
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        url = f"{metadata['authorization_endpoint']}?{urlencode(query)}"
        return url, {"state": state, "nonce": nonce, "verifier": verifier}

    async def finish(self, code: str, redirect_uri: str, flow: dict[str, Any]) -> dict[str, Any]:
        """Exchange the code and return the verified ID token's claims."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": flow["verifier"],
        }
        if self._client_secret:
            form["client_secret"] = self._client_secret  # client_secret_post
        import aiohttp

        try:
            async with _session() as session:
                async with session.post(metadata["token_endpoint"], data=form) as answer:
                    tokens = await answer.json(content_type=None)
                    if answer.status != 200 or "id_token" not in tokens:
                        raise _failed(f"the token endpoint answered {answer.status}")
                keys = await self._get(session, metadata["jwks_uri"])
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failed(f"the provider is unreachable ({type(exc).__name__})") from None
        return self._verify(tokens["id_token"], keys, flow["nonce"])

    def _verify(self, id_token: str, keys: dict[str, Any], nonce: str) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        try:
            token = jwt.decode(id_token, KeySet.import_key_set(keys))  # type: ignore[arg-type]
            registry = jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise _failed(f"the ID token is not valid ({type(exc).__name__})") from None
        return dict(token.claims)
