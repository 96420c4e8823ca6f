"""Indexes for the keys page: sorted and paged over any number of keys.

Revision ID: 0005_pages
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005_pages"
down_revision = "0004_organisation"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_api_keys_created_at": ["created_at", "id"],
    "ix_api_keys_name": ["name", "id"],
    "ix_api_keys_last_used_at": ["last_used_at", "id"],
    "ix_api_keys_expires_at": ["expires_at", "id"],
}


def upgrade() -> None:
    """One index per sortable column of the keys list."""
    for name, columns in INDEXES.items():
        op.create_index(name, "api_keys", columns)


def downgrade() -> None:
    """Drop them."""
    for name in INDEXES:
        op.drop_index(name, "api_keys")
