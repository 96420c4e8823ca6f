"""Refused requests in the books, stored-response owners, gateway secrets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Usage events learn whether they were admitted and why they ended; new tables."""
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(
            sa.Column("admitted", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("reason", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("estimated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("usage_daily") as batch:
        batch.add_column(sa.Column("rejected", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("cancelled", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "usage_daily_rejections",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "key_id", "model", "reason", name="pk_usage_daily_rejections"
        ),
    )
    op.create_index(
        "ix_usage_daily_rejections_key_id_day", "usage_daily_rejections", ["key_id", "day"]
    )
    op.create_table(
        "auth_failures",
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "reason", name="pk_auth_failures"),
    )
    op.create_table(
        "stored_responses",
        sa.Column("response_id", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("backend", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("response_id", name="pk_stored_responses"),
    )
    op.create_index("ix_stored_responses_created_at", "stored_responses", ["created_at"])
    op.create_table(
        "gateway_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_gateway_secrets"),
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    op.drop_table("gateway_secrets")
    op.drop_index("ix_stored_responses_created_at", "stored_responses")
    op.drop_table("stored_responses")
    op.drop_table("auth_failures")
    op.drop_index("ix_usage_daily_rejections_key_id_day", "usage_daily_rejections")
    op.drop_table("usage_daily_rejections")
    with op.batch_alter_table("usage_daily") as batch:
        batch.drop_column("cancelled")
        batch.drop_column("rejected")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("estimated")
        batch.drop_column("reason")
        batch.drop_column("admitted")
