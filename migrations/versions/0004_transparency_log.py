"""The per-organisation transparency log (PROTOCOL §17): frontier, checkpoint, stored nodes.

An existing organisation's log is built here from its envelopes in server sequence order,
so a server upgraded with history serves proofs at once; its checkpoint is then signed on
demand at the first request (the migration holds no server key).

Revision ID: 0004_transparency_log
Revises: 0003_rate_counters
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_transparency_log"
down_revision: str | None = "0003_rate_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STORED_LEVEL = 4  # server/services/tlog.py: STORED_LEVEL, fixed here as of this revision
_CHUNK = 10_000


def upgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.add_column(sa.Column("log_frontier", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("checkpoint", sa.LargeBinary(), nullable=True))
    op.create_table(
        "log_nodes",
        sa.Column("org_id", sa.LargeBinary(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_log_nodes_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "level", "idx", name=op.f("pk_log_nodes")),
    )
    _build_existing_logs(op.get_bind())


def _build_existing_logs(conn: sa.Connection) -> None:
    from sync.merkle import Frontier, leaf_hash

    nodes = sa.table(
        "log_nodes", sa.column("org_id"), sa.column("level"), sa.column("idx"), sa.column("hash")
    )
    for org_id, last_seq in conn.execute(sa.text("SELECT id, last_seq FROM orgs")).all():
        frontier = Frontier.empty()
        after = 0
        while after < last_seq:
            ids = conn.execute(
                sa.text(
                    "SELECT envelope_id FROM envelopes WHERE org_id = :o AND server_seq > :a "
                    "AND server_seq <= :b ORDER BY server_seq"
                ),
                {"o": org_id, "a": after, "b": after + _CHUNK},
            ).scalars()
            frontier, completed = frontier.append(leaf_hash(e) for e in ids)
            rows = [
                {"org_id": org_id, "level": level, "idx": idx, "hash": h}
                for (level, idx), h in completed
                if level >= _STORED_LEVEL
            ]
            if rows:
                conn.execute(nodes.insert(), rows)
            after += _CHUNK
        if frontier.size != last_seq:
            raise RuntimeError("an organisation's envelopes are not gapless; refusing to migrate")
        conn.execute(
            sa.text("UPDATE orgs SET log_frontier = :f WHERE id = :o"),
            {"f": frontier.to_bytes(), "o": org_id},
        )


def downgrade() -> None:
    op.drop_table("log_nodes")
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("checkpoint")
        batch.drop_column("log_frontier")
