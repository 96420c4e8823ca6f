"""What an admin sees of a key (KeyRecord) and the validation of the fields an admin sets."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.model import LIMIT_FIELDS, LIMIT_NAMES, Limits

KeyStatus = Literal["active", "revoked", "expired"]

EDITABLE_FIELDS = ("name", "email", *LIMIT_NAMES, "models", "expires_at", "team_id", "priority")
PRIORITIES = ("high", "normal", "low")
_LIMIT_SPECS = {spec.name: spec for spec in LIMIT_FIELDS}
_MAX_MODELS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key as admins see it: every column but the secret's hash, plus its status."""

    id: str
    name: str
    email: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None
    models: tuple[str, ...]
    limits: Limits
    status: KeyStatus
    team_id: str | None = None
    previous_valid_until: datetime | None = None  # the old secret works until then
    priority: str = "normal"  # its share of a saturated fleet (routing/admission.py)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with ISO 8601 times."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "prefix": self.prefix,
            "status": self.status,
            "created_at": iso_time(self.created_at),
            "last_used_at": iso_time(self.last_used_at),
            "revoked_at": iso_time(self.revoked_at),
            "expires_at": iso_time(self.expires_at),
            "models": list(self.models),
            "priority": self.priority,
            **self.limits.to_json(),
            "team_id": self.team_id,
            "previous_secret_valid_until": iso_time(self.previous_valid_until),
        }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: the full key is here once and never again."""

    id: str
    key: str
    record: KeyRecord


def iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def as_utc(value: datetime | None) -> datetime | None:
    """A timezone-aware UTC datetime (SQLite hands back naive UTC values)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def record_from_row(row: Mapping[Any, Any], now: float) -> KeyRecord:
    """Build a KeyRecord from an api_keys row; `now` decides whether it has expired."""
    expires_at = as_utc(row["expires_at"])
    revoked_at = as_utc(row["revoked_at"])
    status: KeyStatus = "active"
    if revoked_at is not None:
        status = "revoked"
    elif expires_at is not None and expires_at.timestamp() <= now:
        status = "expired"
    created_at = as_utc(row["created_at"])
    assert created_at is not None
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        prefix=row["prefix"],
        created_at=created_at,
        last_used_at=as_utc(row["last_used_at"]),
        revoked_at=revoked_at,
        expires_at=expires_at,
        models=tuple(json.loads(row["models"] or "[]")),
        limits=Limits.from_mapping(row),
        status=status,
        team_id=row.get("team_id"),
        previous_valid_until=as_utc(row.get("previous_valid_until")),
        priority=row.get("priority") or "normal",
    )


def validate_fields(fields: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Check admin-supplied fields and return them as api_keys column values."""
    columns: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "name":
            columns[name] = _name(value)
        elif name == "email":
            columns[name] = _email(value)
        elif name in _LIMIT_SPECS:
            columns[name] = _limit(name, value)
        elif name == "models":
            columns[name] = json.dumps(_models(value))
        elif name == "expires_at":
            columns[name] = _expiry(value, now)
        elif name == "team_id":
            columns[name] = _team_id(value)
        elif name == "priority":
            columns[name] = _priority(value)
        else:
            raise _bad(name, f"unknown field {name!r}")
    return columns


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, message, "invalid_request", param=param)


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad("name", "name must be a string")
    name = value.strip()
    if not name:
        raise _bad("name", "name must not be empty")
    if len(name) > 200:
        raise _bad("name", "name must be at most 200 characters")
    if _CONTROL.search(name):
        raise _bad("name", "name must not contain control characters")
    return name


def _email(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad("email", "email must be a string")
    email = value.strip()
    if not email:
        return None
    if len(email) > 320 or not _EMAIL.match(email) or _CONTROL.search(email):
        raise _bad("email", "email is not a valid address")
    return email


def _limit(name: str, value: Any) -> float | None:
    if value is None:
        return None
    spec = _LIMIT_SPECS[name]
    money = spec.kind is float
    if isinstance(value, bool) or not isinstance(value, float | int if money else int):
        raise _bad(name, f"{name} must be {'a number' if money else 'an integer'} or null")
    if money and not math.isfinite(value):
        raise _bad(name, f"{name} must be a finite number")
    if not spec.low <= value <= spec.high:
        raise _bad(name, f"{name} must be between {spec.low:g} and {spec.high:g} (null: unlimited)")
    return float(value) if money else value


def _team_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 32 or _CONTROL.search(value):
        raise _bad("team_id", "team_id must be a team's id or null")
    return value


def _models(value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        raise _bad("models", "models must be a list of model names")
    if len(value) > _MAX_MODELS:
        raise _bad("models", f"models may list at most {_MAX_MODELS} names")
    models: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _bad("models", "every model name must be a non-empty string")
        model = item.strip()
        if len(model) > 200 or _CONTROL.search(model):
            raise _bad("models", "model names must be at most 200 printable characters")
        if model not in models:
            models.append(model)
    return sorted(models)


def _priority(value: Any) -> str:
    if value is None:
        return "normal"
    if value not in PRIORITIES:
        raise _bad("priority", "priority must be high, normal or low")
    return str(value)


def _expiry(value: Any, now: float) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _bad("expires_at", "expires_at must be an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise _bad("expires_at", "expires_at must be a date-time")
    try:
        expires_at = as_utc(value)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past the last UTC date
        raise _bad("expires_at", "expires_at is outside the dates that can be stored") from None
    assert expires_at is not None
    if expires_at.timestamp() <= now:
        raise _bad("expires_at", "expires_at must be in the future")
    return expires_at
