"""Invites can be cancelled: the coordinator-signed cancellation is kept (PROTOCOL §6.7).

Revision ID: 0007_invite_cancellation
Revises: 0006_recovery_key
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_invite_cancellation"
down_revision: str | None = "0006_recovery_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invites") as batch:
        batch.add_column(sa.Column("cancellation", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invites") as batch:
        batch.drop_column("cancellation")
