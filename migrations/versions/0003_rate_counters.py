"""Rate-limit counters shared by every worker and node (PROTOCOL §11.1).

UNLOGGED on PostgreSQL: the counters need no crash safety (a crash forgets at most one
minute of counts), and commits that touch only unlogged tables skip the WAL flush.

Revision ID: 0003_rate_counters
Revises: 0002_attachments
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_rate_counters"
down_revision: str | None = "0002_attachments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    unlogged = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "rate_counters",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "period", name=op.f("pk_rate_counters")),
        prefixes=["UNLOGGED"] if unlogged else [],
    )
    op.create_index(op.f("ix_rate_counters_period"), "rate_counters", ["period"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_counters_period"), table_name="rate_counters")
    op.drop_table("rate_counters")
