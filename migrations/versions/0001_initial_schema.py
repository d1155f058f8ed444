"""Initial schema: organisations, rosters, invites, devices, envelopes, heads, receipts.

On PostgreSQL, envelope rows keep their ~2.4 KiB ciphertext inline (toast_tuple_target):
moving it to TOAST costs 25-50% of insert throughput.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.LargeBinary(), nullable=False),
        sa.Column("created_day", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("roster_version", sa.Integer(), nullable=False),
        sa.Column("bytes_stored", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orgs")),
    )
    op.create_table(
        "request_nonces",
        sa.Column("key_id", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "nonce", name=op.f("pk_request_nonces")),
    )
    with op.batch_alter_table("request_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_nonces_created"), ["created"], unique=False)

    op.create_table(
        "server_meta",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_meta")),
    )
    op.create_table(
        "devices",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.LargeBinary(), nullable=False),
        sa.Column("signing_key", sa.LargeBinary(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("enrollment", sa.LargeBinary(), nullable=True),
        sa.Column("invite_id", sa.LargeBinary(), nullable=True),
        sa.Column("admitted_version", sa.Integer(), nullable=True),
        sa.Column("revoked_after", sa.BigInteger(), nullable=True),
        sa.Column("revoked_in_version", sa.Integer(), nullable=True),
        sa.Column("equivocation", sa.Boolean(), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("max_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_devices_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "device_id", name=op.f("pk_devices")),
    )
    op.create_table(
        "envelopes",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("server_seq", sa.BigInteger(), nullable=False),
        sa.Column("envelope_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_seq", sa.BigInteger(), nullable=False),
        sa.Column("prev", sa.LargeBinary(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("report_id", sa.LargeBinary(), nullable=True),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_envelopes_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "server_seq", name=op.f("pk_envelopes")),
        sa.UniqueConstraint(
            "org_id",
            "device_id",
            "device_seq",
            name=op.f("uq_envelopes_org_id_device_id_device_seq"),
        ),
        sa.UniqueConstraint("org_id", "envelope_id", name=op.f("uq_envelopes_org_id_envelope_id")),
    )
    with op.batch_alter_table("envelopes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_envelopes_org_id_report_id", ["org_id", "report_id"], unique=False
        )

    op.create_table(
        "equivocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_seq", sa.BigInteger(), nullable=False),
        sa.Column("envelope_id", sa.LargeBinary(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_equivocations_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equivocations")),
    )
    with op.batch_alter_table("equivocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_equivocations_org_id"), ["org_id"], unique=False)

    op.create_table(
        "heads",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("report_id", sa.LargeBinary(), nullable=False),
        sa.Column("envelope_id", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_heads_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "report_id", "envelope_id", name=op.f("pk_heads")),
    )
    op.create_table(
        "invites",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("invite_id", sa.LargeBinary(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("used_by", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_invites_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "invite_id", name=op.f("pk_invites")),
    )
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.LargeBinary(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_receipts_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_receipts_org_id_device_id_id", ["org_id", "device_id", "id"], unique=False
        )

    op.create_table(
        "roster_versions",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_roster_versions_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", "version", name=op.f("pk_roster_versions")),
    )
    # The database epoch: cursors carry it, so a feed cursor from another database
    # (or a re-created one) is recognised (docs/PROTOCOL.md §9.2).
    meta = sa.table(
        "server_meta", sa.column("id", sa.Integer()), sa.column("epoch", sa.LargeBinary())
    )
    op.bulk_insert(meta, [{"id": 1, "epoch": secrets.token_bytes(16)}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE envelopes SET (toast_tuple_target = 8160)")
        op.execute("ALTER TABLE equivocations SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    op.drop_table("roster_versions")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_org_id_device_id_id")

    op.drop_table("receipts")
    op.drop_table("invites")
    op.drop_table("heads")
    with op.batch_alter_table("equivocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equivocations_org_id"))

    op.drop_table("equivocations")
    with op.batch_alter_table("envelopes", schema=None) as batch_op:
        batch_op.drop_index("ix_envelopes_org_id_report_id")

    op.drop_table("envelopes")
    op.drop_table("devices")
    op.drop_table("server_meta")
    with op.batch_alter_table("request_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_nonces_created"))

    op.drop_table("request_nonces")
    op.drop_table("orgs")
