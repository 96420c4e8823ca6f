"""Writing and reading audit records (the rows live in db/audit.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.audit.actor import Actor
from vllm_gateway.db import audit as db_audit

SECRET_FIELDS = frozenset(
    {"key", "secret", "secret_hash", "previous_secret_hash", "password", "password_hash"}
)
"""Never written to the audit log, whatever record they appear in."""


def redact(fields: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The fields without any secret."""
    if fields is None:
        return None
    return {name: value for name, value in fields.items() if name not in SECRET_FIELDS}


async def record(
    connection: AsyncConnection,
    actor: Actor,
    now: float,
    action: str,
    target_type: str,
    target_id: str | None,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit record in the caller's transaction."""
    await db_audit.insert_record(
        connection,
        {
            "ts": now,
            "actor": actor.name[:200],
            "role": actor.role,
            "address": actor.address[:100],
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "before": _dump(redact(before)),
            "after": _dump(redact(after)),
        },
    )


def _dump(fields: dict[str, Any] | None) -> str | None:
    return None if fields is None else json.dumps(fields, default=str, sort_keys=True)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record as the API and the CLI show it."""

    id: int
    ts: float
    actor: str
    role: str
    address: str
    action: str
    target_type: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditRecord:
        """From an audit_log row."""
        return cls(
            id=int(row["id"]),
            ts=float(row["ts"]),
            actor=row["actor"],
            role=row["role"],
            address=row["address"],
            action=row["action"],
            target_type=row["target_type"],
            target_id=row["target_id"],
            before=None if row["before"] is None else json.loads(row["before"]),
            after=None if row["after"] is None else json.loads(row["after"]),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "ts": self.ts,
            "actor": self.actor,
            "role": self.role,
            "address": self.address,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "before": self.before,
            "after": self.after,
        }
