"""Alembic migrations for the server database (same revisions for SQLite and PostgreSQL)."""
