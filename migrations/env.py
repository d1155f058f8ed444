"""Alembic environment: the same static revisions run on SQLite and PostgreSQL.

The database comes from the caller (``config.attributes["connection"]``, as
`server.migrate` passes it) or else from `server.settings`.  SQLite uses batch
mode (``render_as_batch``) so ALTERs work there too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from server import tables
from server.db import make_engine
from server.settings import get_settings

target_metadata = tables.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(get_settings().resolved_database_url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run sealbox-server migrate"
    )
run_migrations_online()
