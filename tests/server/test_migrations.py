"""Alembic migrations: static, revertable, and exactly the schema of server/tables.py (§7.6)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import server.app  # noqa: F401  (imports every table module, attachments included)
from server import migrate, tables


def test_migrations_match_the_table_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    with engine.connect() as conn:
        epoch = conn.execute(text("SELECT epoch FROM server_meta")).scalar_one()
    assert len(epoch) == 16
    migrate.downgrade(engine, "base")
    assert "envelopes" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as conn:
        # A re-created database draws a new epoch (cursors from the old one are refused).
        assert conn.execute(text("SELECT epoch FROM server_meta")).scalar_one() != epoch
