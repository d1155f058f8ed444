"""The recovery key of an organisation's newest roster version (PROTOCOL §20.4).

Revision ID: 0006_recovery_key
Revises: 0005_roster_freshness
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_recovery_key"
down_revision: str | None = "0005_roster_freshness"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orgs", sa.Column("recovery_key", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("recovery_key")
