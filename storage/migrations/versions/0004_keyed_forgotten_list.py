"""forgotten_authors: keyed digests (scheme) of accounts, handles and posts (kind)

Rows made by 0003 are unkeyed SHA-256 digests of "platform:account id"; they cannot be re-keyed
(the originals are erased), so they stay as scheme 'sha256', kind 'account', and are still
checked. New rows are HMAC-SHA256 digests keyed by TRACKER_PRIVACY_KEY (scheme 'hmac-sha256').

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("forgotten_authors") as batch:
        batch.add_column(sa.Column("scheme", sa.String(length=16), nullable=False, server_default="sha256"))
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="account"))
    # checked before every stored page: "is there any keyed / unkeyed digest" must not scan the list
    op.create_index(op.f("ix_forgotten_authors_scheme"), "forgotten_authors", ["scheme"])


def downgrade() -> None:
    # keyed rows mean nothing to the 0003 code (it would compare them with unkeyed hashes); they
    # are kept, so an upgrade again finds them, but only the unkeyed ones are checked meanwhile
    op.drop_index(op.f("ix_forgotten_authors_scheme"), table_name="forgotten_authors")
    with op.batch_alter_table("forgotten_authors") as batch:
        batch.drop_column("kind")
        batch.drop_column("scheme")
