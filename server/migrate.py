"""Run Alembic migrations programmatically and tell whether a database is at head.

Rules:
* The server never serves a schema other than the head of ``migrations/`` (PROTOCOL §7.5):
  `schema_state` tells ``serve`` (which refuses to start) and ``/readyz`` (503) the same thing.
* ``upgrade`` may run on several nodes at once (``SEALBOX_MIGRATE_ON_START``): on
  PostgreSQL it holds a transaction-level advisory lock, so one node migrates and the
  others find the schema at head when they get the lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

__all__ = [
    "SchemaState",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "schema_state",
    "upgrade",
]

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key: "sealbox" in ASCII, so it collides with nobody else's.
_MIGRATION_LOCK = 0x7365616C626F78


def alembic_config() -> Config:
    config = Config(str(_MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    return _script().get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against the migrations this server ships."""

    current: str | None
    head: str | None

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def behind(self) -> bool:
        """Missing, or at a revision of ours older than the head: ``migrate`` fixes it."""
        if self.at_head:
            return False
        if self.current is None:
            return True
        try:
            return _script().get_revision(self.current) is not None
        except Exception:  # noqa: BLE001 - alembic raises several kinds for unknown ids
            return False

    @property
    def problem(self) -> str | None:
        """None at head, else what is wrong and what to run (no connection details)."""
        if self.at_head:
            return None
        if self.current is None:
            return "the database has no schema yet; run `sealbox-server migrate`"
        if not self.behind:
            return (
                f"the database schema is at revision {self.current}, which this server does "
                f"not know (a newer release migrated it); run that release or restore a backup"
            )
        return (
            f"the database schema is at revision {self.current}, behind this server's "
            f"{self.head}; run `sealbox-server migrate`"
        )


def schema_state(engine: Engine) -> SchemaState:
    """Read the database's revision (raises SQLAlchemyError when it is unreachable)."""
    return SchemaState(current_revision(engine), head_revision())


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` (one transaction)."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
