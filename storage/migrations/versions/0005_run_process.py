"""collection_runs: which process ran a run (host, pid) and when it last stored a page

So a run whose process is gone (kill -9, power cut) is shown and recorded as interrupted
instead of 'running' for ever: on the same host by checking the pid, elsewhere by staleness.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collection_runs") as batch:
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collection_runs") as batch:
        batch.drop_column("progress_at")
        batch.drop_column("pid")
        batch.drop_column("host")
