"""Attachment uploads and their chunks (docs/PROTOCOL.md §13.4).

Revision ID: 0002_attachments
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_attachments"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attachment_uploads",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("upload_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.LargeBinary(), nullable=False),
        sa.Column("chunk_size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_count", sa.BigInteger(), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_activity", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_attachment_uploads_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", "upload_id", name=op.f("pk_attachment_uploads")),
    )
    op.create_index(
        "ix_attachment_uploads_org_id_device_id",
        "attachment_uploads",
        ["org_id", "device_id"],
    )
    op.create_index(
        "ix_attachment_uploads_state_last_activity",
        "attachment_uploads",
        ["state", "last_activity"],
    )
    op.create_table(
        "attachment_chunks",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("upload_id", sa.LargeBinary(), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "upload_id", "index", name=op.f("pk_attachment_chunks")),
    )


def downgrade() -> None:
    op.drop_table("attachment_chunks")
    op.drop_index("ix_attachment_uploads_state_last_activity", table_name="attachment_uploads")
    op.drop_index("ix_attachment_uploads_org_id_device_id", table_name="attachment_uploads")
    op.drop_table("attachment_uploads")
