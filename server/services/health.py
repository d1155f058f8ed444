"""Readiness: database reachable and migrated to head."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from server import migrate

__all__ = ["readiness_problem"]


@lru_cache(maxsize=1)
def _head() -> str | None:
    return migrate.head_revision()


def readiness_problem(engine: Engine) -> str | None:
    """None when ready, else a short reason (no connection details)."""
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError:
        return "database unreachable"
    if current != _head():
        return "database schema is not at the migration head; run sealbox-server migrate"
    return None
