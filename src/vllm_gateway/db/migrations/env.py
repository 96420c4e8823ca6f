"""Alembic environment: runs on the connection that db.engine hands over (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from vllm_gateway.db.partitions import not_a_partition
from vllm_gateway.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=not_a_partition,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if _connection is None:
    raise RuntimeError("run migrations through vllm_gateway.db.engine (vllm-gateway db upgrade)")
_run(_connection)
