"""Database engine and the two kinds of transaction the services use.

Rules (docs/PROTOCOL.md §7.7):
* SQLite: WAL, synchronous=NORMAL, foreign_keys=ON, busy_timeout, 16 KiB pages.
  The driver runs in autocommit mode and we issue BEGIN ourselves, so a write
  transaction starts with ``BEGIN IMMEDIATE``: it takes the database write lock
  up front (the per-organisation lock is then implied), and two writers never
  deadlock upgrading a read lock.
* PostgreSQL: READ COMMITTED; a write transaction locks its organisation row with
  ``SELECT ... FOR UPDATE`` before it reads the sequence counter (see
  `server.services.store.lock_org`).
* Either way the per-organisation server sequence is taken inside the write
  transaction, so a feed reader can never skip a row that commits late.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text

from server.settings import Settings

__all__ = ["make_engine", "read_tx", "write_tx"]

_SQLITE_PRAGMAS = (
    "PRAGMA page_size=16384",  # only effective on a new database; before WAL
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA cache_size=-32768",
)


def make_engine(url: str, *, connect_args: dict[str, Any] | None = None) -> Engine:
    """Create the engine for ``url`` with Sealbox's connection settings."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, **(connect_args or {})},
            pool_size=8,
            max_overflow=8,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("sealbox_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(
        url, connect_args=connect_args or {}, pool_size=8, max_overflow=8, pool_pre_ping=True
    )


class _SqliteWriteLock:
    """Serialises SQLite writers without SQLite's busy handler, which sleeps in coarse
    steps (1, 2, 5, ... 100 ms): a thread lock for our own threads, plus an ``flock``
    on a file next to the database for other worker processes (woken at release)."""

    def __init__(self, database: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = f"{database}.writelock" if database and database != ":memory:" else None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._path is None:
                yield
                return
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, _SqliteWriteLock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(engine: Engine) -> _SqliteWriteLock | None:
    if engine.dialect.name != "sqlite":
        return None
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _WRITE_LOCKS[engine] = _SqliteWriteLock(engine.url.database)
        return lock


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite: BEGIN IMMEDIATE). Commits on success, rolls back on error."""
    lock = _write_lock(engine)
    with lock.hold() if lock is not None else nullcontext():
        with engine.connect() as conn:
            conn = conn.execution_options(sealbox_write=True)
            with conn.begin():
                yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (one consistent snapshot)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def ping(engine: Engine) -> None:
    """Raise if the database is unreachable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def engine_for(settings: Settings) -> Engine:
    if settings.is_sqlite:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)
