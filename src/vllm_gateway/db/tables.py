"""The database schema as SQLAlchemy Core tables (created by the Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    true,
)

from vllm_gateway.limits.model import INT32_MAX, LIMIT_FIELDS

# Stable constraint names so migrations can alter them on every dialect.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def limit_columns() -> list[Column[int]]:
    """A nullable column per limit (LIMIT_FIELDS), wide enough for its bounds."""
    return [
        Column(spec.name, BigInteger if spec.high > INT32_MAX else Integer, nullable=True)
        for spec in LIMIT_FIELDS
    ]


# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("prefix", String(32), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("models", Text, nullable=False, default="[]"),
    *limit_columns(),
    Column("priority", String(8), nullable=False, server_default="normal"),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("ts", Double, nullable=False, index=True),
    Column("request_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("route", String(100), nullable=False),
    Column("status", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("ttft_ms", Double, nullable=True),
    Column("backend", String(200), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("admitted", Boolean, nullable=False, server_default=true()),
    Column("reason", String(64), nullable=True),
    Column("estimated", Boolean, nullable=False, server_default=false()),
    Column("queued_ms", Double, nullable=False, server_default="0"),  # fair admission's wait
    Index("ix_usage_events_key_id_ts", "key_id", "ts"),
    Index("uq_usage_events_request_id", "request_id", unique=True),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", String(10), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("latency_ms_sum", Double, nullable=False, default=0.0),
    Column("rejected", BigInteger, nullable=False, server_default="0"),
    Column("cancelled", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("day", "key_id", "model"),
    Index("ix_usage_daily_key_id_day", "key_id", "day"),
)

usage_daily_rejections = Table(
    "usage_daily_rejections",
    metadata,
    Column("day", String(10), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("day", "key_id", "model", "reason"),
    Index("ix_usage_daily_rejections_key_id_day", "key_id", "day"),
)

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("minute", BigInteger, nullable=False),  # epoch minute number
    Column("reason", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("minute", "reason"),
)

stored_responses = Table(
    "stored_responses",
    metadata,
    Column("response_id", String(200), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("backend", String(200), nullable=False),
    Column("created_at", Double, nullable=False, index=True),
)

gateway_secrets = Table(
    "gateway_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

admin_credentials = Table(
    "admin_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("key_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)
