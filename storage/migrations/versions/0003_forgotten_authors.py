"""forgotten_authors: hashes of erased accounts, so their posts are not collected again

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forgotten_authors",
        sa.Column("author_hash", sa.String(length=64), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("author_hash", name=op.f("pk_forgotten_authors")),
    )


def downgrade() -> None:
    op.drop_table("forgotten_authors")
