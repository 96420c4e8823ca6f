"""Usage events are unique per request id, so a replayed journal never counts one twice.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """A unique index on usage_events.request_id."""
    op.create_index("uq_usage_events_request_id", "usage_events", ["request_id"], unique=True)


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("uq_usage_events_request_id", "usage_events")
