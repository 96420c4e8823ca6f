"""The client key format: `vgw-` + a public id + a secret; only the secret's hash is stored."""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Final

KEY_PREFIX: Final = "vgw-"
_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits
_ID_LENGTH: Final = 12  # ~62 bits: public, only has to be unique
_SECRET_LENGTH: Final = 32  # ~190 bits of randomness
KEY_LENGTH: Final = len(KEY_PREFIX) + _ID_LENGTH + _SECRET_LENGTH


def new_key() -> tuple[str, str, str]:
    """A fresh (public id, secret, full key)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    secret, full_key = new_secret(key_id)
    return key_id, secret, full_key


def new_secret(key_id: str) -> tuple[str, str]:
    """A fresh (secret, full key) for an existing key id (a rotation)."""
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
    return secret, KEY_PREFIX + key_id + secret


def parse_key(presented: str | None) -> tuple[str, str] | None:
    """Split a presented key into (public id, secret), or None if it is not one of ours."""
    if presented is None or len(presented) != KEY_LENGTH or not presented.startswith(KEY_PREFIX):
        return None
    body = presented[len(KEY_PREFIX) :]
    if not body.isascii() or not body.isalnum():
        return None
    key_id = body[:_ID_LENGTH]
    if not (key_id.islower() or key_id.isdigit()):
        return None
    return key_id, body[_ID_LENGTH:]


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a key's secret part (keys are long random secrets: no slow hash needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(key_id: str) -> str:
    """What lists show of a key: enough to recognise it, nothing of its secret."""
    return f"{KEY_PREFIX}{key_id}…"
