"""The database schema as SQLAlchemy Core tables (created by the Alembic migrations)."""

from __future__ import annotations

from typing import Any

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

from vllm_gateway.limits.model import INT32_MAX, LIMIT_FIELDS, LimitField

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


def limit_columns() -> list[Column[Any]]:
    """A nullable column per limit (LIMIT_FIELDS), wide enough for its bounds."""
    return [Column(spec.name, _limit_type(spec), nullable=True) for spec in LIMIT_FIELDS]


def _limit_type(spec: LimitField) -> Any:
    if spec.kind is float:
        return Double
    return BigInteger if spec.high > INT32_MAX else Integer


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
    Column("team_id", String(32), nullable=True, index=True),
    # Rotation: the secret before the last rotation works until previous_valid_until.
    Column("previous_secret_hash", String(64), nullable=True),
    Column("previous_valid_until", DateTime(timezone=True), nullable=True),
    Column("priority", String(8), nullable=False, server_default="normal"),
    # The keys page sorts by these, a page at a time, over any number of keys.
    Index("ix_api_keys_created_at", "created_at", "id"),
    Index("ix_api_keys_name", "name", "id"),
    Index("ix_api_keys_last_used_at", "last_used_at", "id"),
    Index("ix_api_keys_expires_at", "expires_at", "id"),
)

teams = Table(
    "teams",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("models", Text, nullable=False, default="[]"),
    *limit_columns(),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

model_prices = Table(
    "model_prices",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("input_per_million", Double, nullable=False),
    Column("cached_input_per_million", Double, nullable=True),
    Column("output_per_million", Double, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),  # null: single sign-on only
    Column("role", String(20), nullable=False),
    Column("team_ids", Text, nullable=False, default="[]"),  # a team_manager's teams
    Column("oidc_subject", String(255), nullable=True, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("ts", Double, nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("address", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(200), nullable=True),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Index("ix_audit_log_target", "target_type", "target_id"),
)

budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(32), nullable=False),
    Column("period", String(10), nullable=False),  # YYYY-MM-DD or YYYY-MM
    Column("threshold", Integer, nullable=False),  # percent: 80 or 100
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("spent_usd", Double, nullable=False),
    Column("budget_usd", Double, nullable=False),
    PrimaryKeyConstraint("subject_kind", "subject_id", "period", "threshold"),
)

# On PostgreSQL partitioned by day of ts (migration 0007, db/partitions.py), its primary key
# there being (id, ts); queries name the parent and PostgreSQL picks the partitions.
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
    Column("cost_usd", Double, nullable=False, server_default="0"),
    Column("team_id", String(32), nullable=True),
    Column("queued_ms", Double, nullable=False, server_default="0"),  # fair admission's wait
    Index("ix_usage_events_key_id_ts", "key_id", "ts"),
    # With ts: PostgreSQL partitions the table by ts (migration 0007), and a partitioned
    # table's unique index must hold its partition key. An event's ts is fixed when it is
    # sealed, so a re-sent event is the same (request_id, ts) and is still skipped.
    Index("uq_usage_events_request_id", "request_id", "ts", unique=True),
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
    Column("cost_usd", Double, nullable=False, server_default="0"),
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
    # Made through an alias: the public name and the backend's, so a fetch names the public one.
    Column("public_model", String(200), nullable=True),
    Column("served_model", String(200), nullable=True),
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
    Column("user_id", Integer, nullable=True),  # null: the break-glass admin key (owner)
)

fleet_runtime = Table(
    "fleet_runtime",
    metadata,
    Column("name", String(200), primary_key=True),  # the backend's name
    Column("spec", Text, nullable=True),  # JSON of a backend added at run time; null otherwise
    Column("removed", Boolean, nullable=False, server_default=false()),
    Column("draining", Boolean, nullable=False, server_default=false()),
    Column("updated_at", Double, nullable=False),
)
