"""Grants (chain keys of past epochs re-wrapped to another coordinator) and devices'
signing-key rotation requests (PROTOCOL §19).

Revision ID: 0008_grants
Revises: 0007_invite_cancellation
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_grants"
down_revision: str | None = "0007_invite_cancellation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("grant_id", sa.LargeBinary(), nullable=False),
        sa.Column("granter", sa.LargeBinary(), nullable=False),
        sa.Column("grantee", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_grants_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "seq", name=op.f("pk_grants")),
        sa.UniqueConstraint("org_id", "grant_id", name=op.f("uq_grants_org_id_grant_id")),
    )
    op.create_table(
        "rotations",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("old_device", sa.LargeBinary(), nullable=False),
        sa.Column("new_device", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_rotations_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "old_device", "new_device", name=op.f("pk_rotations")),
    )


def downgrade() -> None:
    op.drop_table("rotations")
    op.drop_table("grants")
