"""Organisation: teams, budgets, prices and cost, admin users and roles, audit, rotation.

Revision ID: 0004_organisation
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_organisation"
down_revision = "0003"
branch_labels = None
depends_on = None

_BUDGETS = ("daily_budget_usd", "monthly_budget_usd")
_LIMITS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("daily_requests", sa.Integer()),
    ("rpm", sa.Integer()),
    ("daily_tokens", sa.BigInteger()),
    ("max_concurrency", sa.Integer()),
    ("daily_budget_usd", sa.Double()),
    ("monthly_budget_usd", sa.Double()),
)


def upgrade() -> None:
    """New tables; keys learn their team, budgets and previous secret; usage its cost."""
    with op.batch_alter_table("api_keys") as batch:
        for name in _BUDGETS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        batch.add_column(sa.Column("team_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("previous_secret_hash", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_api_keys_team_id", ["team_id"])
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("cost_usd", sa.Double(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("team_id", sa.String(32), nullable=True))
    with op.batch_alter_table("usage_daily") as batch:
        batch.add_column(sa.Column("cost_usd", sa.Double(), nullable=False, server_default="0"))
    with op.batch_alter_table("admin_sessions") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
    op.create_table(
        "teams",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("models", sa.Text(), nullable=False),
        *(sa.Column(name, kind, nullable=True) for name, kind in _LIMITS),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.UniqueConstraint("name", name="uq_teams_name"),
    )
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("input_per_million", sa.Double(), nullable=False),
        sa.Column("cached_input_per_million", sa.Double(), nullable=True),
        sa.Column("output_per_million", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_model_prices"),
    )
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("team_ids", sa.Text(), nullable=False),
        sa.Column("oidc_subject", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_users"),
        sa.UniqueConstraint("username", name="uq_admin_users_username"),
        sa.UniqueConstraint("oidc_subject", name="uq_admin_users_oidc_subject"),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_index("ix_audit_log_target", "audit_log", ["target_type", "target_id"])
    op.create_table(
        "budget_alerts",
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_usd", sa.Double(), nullable=False),
        sa.Column("budget_usd", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "subject_kind", "subject_id", "period", "threshold", name="pk_budget_alerts"
        ),
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    for table in ("budget_alerts", "audit_log", "admin_users", "model_prices", "teams"):
        op.drop_table(table)
    with op.batch_alter_table("admin_sessions") as batch:
        batch.drop_column("user_id")
    with op.batch_alter_table("usage_daily") as batch:
        batch.drop_column("cost_usd")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("team_id")
        batch.drop_column("cost_usd")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_team_id")
        for name in ("previous_valid_until", "previous_secret_hash", "team_id", *_BUDGETS):
            batch.drop_column(name)
