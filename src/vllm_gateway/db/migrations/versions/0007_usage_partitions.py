"""usage_events partitioned by UTC day of ts on PostgreSQL (db/partitions.py); unique per
(request_id, ts) on both databases.

The table is renamed aside, a partitioned table of the same columns (and the same id sequence)
takes its name, the days that hold events get their partitions, every row is copied with its
id, and the old table goes: one transaction, so a failure leaves the table as it was. A unique
index of a partitioned table must include the partition key, so events are unique per
(request_id, ts), and SQLite's plain table gets the same index so both books follow one rule
(a re-sent event keeps its ts: DESIGN.md §5).

Revision ID: 0007_usage_partitions
Revises: 0006_fleet
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from vllm_gateway.db.partitions import (
    DEFAULT_PARTITION,
    create_partition_statements,
    utc_date,
)

revision = "0007_usage_partitions"
down_revision = "0006_fleet"
branch_labels = None
depends_on = None

_OLD = "usage_events_unpartitioned"
_INDEXES = ("pk_usage_events", "ix_usage_events_ts", "ix_usage_events_key_id_ts")
_UNIQUE = "uq_usage_events_request_id"


def _rename_aside(suffix: str) -> str:
    """Rename usage_events and its indexes out of the way; returns the id sequence's name."""
    aside = f"usage_events{suffix}"
    op.execute(f"ALTER TABLE usage_events RENAME TO {aside}")
    for index in (*_INDEXES, _UNIQUE):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}{suffix}")
    sequence = op.get_bind().execute(
        text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": aside}
    )
    return str(sequence.scalar_one())


def _indexes(unique: list[str]) -> None:
    op.execute("CREATE INDEX ix_usage_events_ts ON usage_events (ts)")
    op.execute("CREATE INDEX ix_usage_events_key_id_ts ON usage_events (key_id, ts)")
    op.execute(f"CREATE UNIQUE INDEX {_UNIQUE} ON usage_events ({', '.join(unique)})")


def _sqlite_unique(columns: list[str]) -> None:
    op.drop_index(_UNIQUE, "usage_events")
    op.create_index(_UNIQUE, "usage_events", columns, unique=True)


def upgrade() -> None:
    """Partition usage_events by day on PostgreSQL, keeping every event and its id."""
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_unique(["request_id", "ts"])
        return
    sequence = _rename_aside("_unpartitioned")
    op.execute(
        f"CREATE TABLE usage_events (LIKE {_OLD} INCLUDING DEFAULTS, "
        "CONSTRAINT pk_usage_events PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)"
    )
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY usage_events.id")
    _indexes(["request_id", "ts"])
    op.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF usage_events DEFAULT")
    days = op.get_bind().execute(text(f"SELECT DISTINCT floor(ts / 86400) FROM {_OLD}"))  # noqa: S608 - constant
    for (day_number,) in days.all():
        for statement in create_partition_statements(utc_date(day_number * 86400.0)):
            op.execute(statement)
    op.execute(f"INSERT INTO usage_events SELECT * FROM {_OLD}")  # noqa: S608 - constant
    op.execute(f"DROP TABLE {_OLD}")
    op.execute("ANALYZE usage_events")


def downgrade() -> None:
    """Back to one plain table on PostgreSQL, keeping every event and its id."""
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_unique(["request_id"])
        return
    sequence = _rename_aside("_partitioned")
    op.execute(
        "CREATE TABLE usage_events (LIKE usage_events_partitioned INCLUDING DEFAULTS, "
        "CONSTRAINT pk_usage_events PRIMARY KEY (id))"
    )
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY usage_events.id")
    op.execute("INSERT INTO usage_events SELECT * FROM usage_events_partitioned")
    _indexes(["request_id"])
    op.execute("DROP TABLE usage_events_partitioned")  # its partitions with it
