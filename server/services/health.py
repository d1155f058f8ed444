"""Readiness: database reachable and migrated to head (PROTOCOL §7.5)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from server import migrate

__all__ = ["readiness_problem"]


def readiness_problem(engine: Engine) -> str | None:
    """None when ready, else a short reason (no connection details)."""
    try:
        state = migrate.schema_state(engine)
    except SQLAlchemyError:
        return "database unreachable"
    return state.problem
