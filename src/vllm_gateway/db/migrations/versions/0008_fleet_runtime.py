"""Run-time fleet changes (add, remove, drain, resume) that outlive a restart; the alias
names of stored responses.

Revision ID: 0008_fleet_runtime
Revises: 0006_fleet (0007 is being written alongside; the chain is fixed when both land)
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_fleet_runtime"
down_revision = "0007_usage_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """fleet_runtime: one row per backend a run-time change named; stored_responses' names."""
    with op.batch_alter_table("stored_responses") as batch:
        batch.add_column(sa.Column("public_model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("served_model", sa.String(200), nullable=True))
    op.create_table(
        "fleet_runtime",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=True),
        sa.Column("removed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("fleet_runtime")
    with op.batch_alter_table("stored_responses") as batch:
        batch.drop_column("served_model")
        batch.drop_column("public_model")
