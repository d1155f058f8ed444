"""The newest roster freshness statement per organisation (PROTOCOL §18.2).

Revision ID: 0005_roster_freshness
Revises: 0004_transparency_log
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_roster_freshness"
down_revision: str | None = "0004_transparency_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "roster_freshness",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_roster_freshness_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_roster_freshness")),
    )


def downgrade() -> None:
    op.drop_table("roster_freshness")
