"""The admin secret: GATEWAY_ADMIN_KEY, or a generated key stored only as an argon2 hash."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sys
import time
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from vllm_gateway.access.login_throttle import LoginThrottle
from vllm_gateway.db import admin as db_admin
from vllm_gateway.db.engine import Database
from vllm_gateway.settings import Settings

log = logging.getLogger(__name__)

ADMIN_KEY_PREFIX = "vgw-admin-"
_MAX_TOKEN_LENGTH = 512
_RELOAD_INTERVAL = 10.0  # seconds; bounds how long a key replaced by the CLI keeps working
_CONCURRENT_ARGON2 = 2  # argon2 is deliberately costly: a flood of guesses must not starve us


def new_admin_key() -> str:
    """A fresh admin key (never parses as a client key)."""
    return ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AdminIdentity:
    """Knows the admin key and checks tokens against it."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._hasher = PasswordHasher()
        self._configured: bytes | None = None
        self._stored_hash: str | None = None
        self._loaded_at = float("-inf")
        self._verified: tuple[str, bytes] | None = None
        self._argon2_slots = asyncio.Semaphore(_CONCURRENT_ARGON2)

    async def start(self) -> None:
        """Use GATEWAY_ADMIN_KEY, or the stored credential, or generate one and print it once."""
        configured = self._settings.gateway_admin_key
        if configured is not None and configured.get_secret_value():
            self._configured = _digest(configured.get_secret_value())
            await self._record_configured(configured.get_secret_value())
            return
        async with self._database.engine.connect() as connection:
            stored = await db_admin.fetch_credential(connection)
        if stored is None:
            key = new_admin_key()
            key_hash = await asyncio.to_thread(self._hasher.hash, key)
            try:
                async with self._database.engine.begin() as connection:
                    await db_admin.insert_credential(connection, key_hash, _now())
            except IntegrityError:
                # Another worker generated the key first (and printed it).
                async with self._database.engine.connect() as connection:
                    stored = await db_admin.fetch_credential(connection)
            else:
                stored = key_hash
                _print_banner(key)
        self._stored_hash = stored
        self._loaded_at = time.monotonic()

    async def verify(self, token: str) -> bool:
        """Whether `token` is the admin key (cheap after the first success)."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return False
        digest = _digest(token)
        if self._configured is not None:
            return hmac.compare_digest(digest, self._configured)
        stored = await self._current_hash()
        if stored is None:
            return False
        verified = self._verified
        if verified is not None and verified[0] == stored:
            return hmac.compare_digest(digest, verified[1])
        async with self._argon2_slots:
            ok = await asyncio.to_thread(self._check, stored, token)
        if ok:
            self._verified = (stored, digest)
        return ok

    async def _record_configured(self, key: str) -> None:
        """Store GATEWAY_ADMIN_KEY's hash; a changed key ends every login session made before."""
        async with self._database.engine.connect() as connection:
            stored = await db_admin.fetch_credential(connection)
        if stored is not None and await asyncio.to_thread(self._check, stored, key):
            return
        key_hash = await asyncio.to_thread(self._hasher.hash, key)
        try:
            async with self._database.engine.begin() as connection:
                await db_admin.replace_credential(connection, key_hash, _now())
        except IntegrityError:
            return  # another worker, starting at the same time, recorded it first
        if stored is not None:
            log.info("GATEWAY_ADMIN_KEY changed: every admin login session has ended")

    def _check(self, stored: str, token: str) -> bool:
        try:
            return self._hasher.verify(stored, token)
        except (VerificationError, InvalidHashError):
            return False

    async def _current_hash(self) -> str | None:
        # Re-read now and then so `vllm-gateway admin reset-key` reaches running workers.
        if time.monotonic() - self._loaded_at < _RELOAD_INTERVAL:
            return self._stored_hash
        try:
            async with self._database.engine.connect() as connection:
                self._stored_hash = await db_admin.fetch_credential(connection)
            self._loaded_at = time.monotonic()
        except SQLAlchemyError:
            log.warning("could not reload the admin credential; using the cached one")
        return self._stored_hash

    async def reset(self) -> str:
        """Store a new admin key (ending every login session) and return it, once."""
        key = new_admin_key()
        key_hash = await asyncio.to_thread(self._hasher.hash, key)
        async with self._database.engine.begin() as connection:
            await db_admin.replace_credential(connection, key_hash, _now())
        self._stored_hash = key_hash
        self._loaded_at = time.monotonic()
        self._verified = None
        log.info("admin key replaced")
        return key


def _now() -> datetime:
    return datetime.now(UTC)


def _print_banner(key: str) -> None:
    """Show a generated admin key on the console (never through logging)."""
    line = "=" * 78
    print(
        f"\n{line}\n"
        "  vLLM Gateway: a new admin key was generated. It is shown ONLY THIS ONCE;\n"
        "  store it now. Only its hash is kept. Replace it: vllm-gateway admin reset-key\n\n"
        f"      {key}\n"
        f"{line}\n",
        file=sys.stderr,
        flush=True,
    )


async def verify_throttled(
    admin: AdminIdentity, throttle: LoginThrottle, address: str, token: str, via: str
) -> bool:
    """Check an admin key, throttled per client address (429 while blocked)."""
    throttle.check(address)
    if await admin.verify(token):
        throttle.succeeded(address)
        return True
    throttle.failed(address, via)
    return False
