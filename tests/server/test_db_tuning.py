"""The storage tuning that keeps ingest flat as history grows (bench/README.md, "Growth").

Each setting here was measured at 10^6 stored revisions; these tests keep them from
silently going away: SQLite's page size, memory map and automatic-checkpoint backstop,
checkpoints outside the write lock, and PostgreSQL sessions without JIT.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from server.db import _AUTOCHECKPOINT_PAGES, _checkpointer, make_engine, write_tx


def _pragma(engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def test_a_new_sqlite_database_gets_the_measured_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert _pragma(engine, "page_size") == 4096
        assert _pragma(engine, "synchronous") == 2  # FULL: durability is not traded
        assert _pragma(engine, "mmap_size") > 0
        assert _pragma(engine, "wal_autocheckpoint") == _AUTOCHECKPOINT_PAGES
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        engine.dispose()


def test_the_server_checkpoints_the_wal_outside_the_write_lock(tmp_path: Path) -> None:
    """Writes through `write_tx` leave a WAL that the checkpointer copies back (PASSIVE)."""
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        for _ in range(20):
            with write_tx(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": os.urandom(3000)})
        checkpointer = _checkpointer(engine)
        assert checkpointer is not None
        checkpointer.checkpoint()
        with engine.connect() as conn:
            busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        assert busy == 0 and copied == frames  # nothing left behind in the WAL
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_sessions_run_without_jit() -> None:
    url = os.environ.get("SEALBOX_TEST_DATABASE_URL")
    if not url:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar_one() == "off"
    finally:
        engine.dispose()
