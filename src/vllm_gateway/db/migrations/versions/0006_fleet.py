"""Fleet routing: a key's admission priority, and each request's wait for a saturated fleet.

Revision ID: 0006_fleet
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_fleet"
down_revision = "0005_pages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """api_keys.priority (high, normal, low) and usage_events.queued_ms."""
    op.add_column(
        "api_keys",
        sa.Column("priority", sa.String(8), nullable=False, server_default="normal"),
    )
    op.add_column(
        "usage_events",
        sa.Column("queued_ms", sa.Double(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    """Drop both columns."""
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("queued_ms")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("priority")
