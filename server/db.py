"""Database engine and the two kinds of transaction the services use.

Rules (docs/PROTOCOL.md §7.7):
* SQLite: WAL, synchronous=FULL, foreign_keys=ON, busy_timeout, 4 KiB pages, reads
  through a memory map, checkpoints outside the write lock (`_Checkpointer`).
  FULL, not NORMAL: in WAL mode NORMAL does not sync at commit, so a power cut
  could lose a push the server already acknowledged with a receipt, after the
  device deleted its copy (PostgreSQL syncs each commit by default too).
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
import select
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.exc import DisconnectionError

from server.settings import Settings

__all__ = [
    "Batch",
    "Pending",
    "fetch",
    "make_engine",
    "outside_transactions",
    "read_tx",
    "write_tx",
]

# Checkpoints: SQLite's automatic checkpoint runs inside the COMMIT that crosses its
# threshold, that is inside `write_tx`'s write lock, where it stalls every writer while it
# copies the WAL into the database and fsyncs it.  With a large history the pages a push
# dirties are scattered over the database (its indexes on random 32-byte ids), so that copy
# grows with the history: at 10^6 stored revisions commits of 100-200 ms came every ~9th
# push.  The server checkpoints out of the lock instead (`_Checkpointer`); the automatic
# one stays as a backstop, far above what the server lets accumulate.
_AUTOCHECKPOINT_PAGES = 16384
# Reads through a memory map: a connection's page cache is discarded whenever another
# connection committed (every push, with two workers), so each push re-read its index
# pages with a read() call each; mapped, they are read in place from the OS's cache.  The
# map covers the database up to SQLite's compiled-in maximum (2 GiB here); writes still go
# through the WAL and its fsync, so durability is unchanged.
_MMAP_BYTES = 1 << 40

_SQLITE_PRAGMAS = (
    # Only effective on a new database (before WAL; an existing one keeps its size until
    # it is rebuilt: PRAGMA journal_mode=DELETE, page_size, VACUUM, journal_mode=WAL).
    # 4 KiB, SQLite's default: a push inserts into indexes on random 32-byte ids (envelope
    # ids, report ids), one scattered leaf page per revision once they outgrow memory, and
    # each such page is written twice (WAL, checkpoint) and read back from disk when the OS
    # evicted it.  With 16 KiB pages a revision of 2.4 KB cost 55 KB of writes at 10^6
    # stored (16 KB on an empty server); see bench/README.md, "Growth".
    "PRAGMA page_size=4096",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # a receipt lets a device delete its copy: fsync each commit
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA cache_size=-32768",
    f"PRAGMA mmap_size={_MMAP_BYTES}",
    f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}",
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
    engine = create_engine(
        url, connect_args=_postgres_connect_args(url, connect_args), pool_size=8, max_overflow=8
    )
    _ping_stale_connections(engine)
    return engine


# PostgreSQL session settings for the server's connections (libpq ``options``, so they
# cost no round trip): ``jit=off``.  JIT compilation pays off for long analytic queries; the
# server's statements are index probes and short ranges, but the planner decides on its
# cost estimates, and with statistics missing or lagging a fast-growing organisation (no
# ANALYZE yet) the push's id lookup was estimated at 26,000 rows and JIT-compiled on every
# push: 5 ms of the database's CPU, while the organisation's lock is held, at 10^6 stored.
_PG_SESSION_OPTIONS = "-c jit=off"


def _postgres_connect_args(url: str, connect_args: dict[str, Any] | None) -> dict[str, Any]:
    """``connect_args`` with `_PG_SESSION_OPTIONS` added to any ``options`` given (in the
    arguments or in the URL's query)."""
    out = dict(connect_args or {})
    given = out.get("options")
    if given is None:
        query = make_url(url).query.get("options")
        given = query if isinstance(query, str) else None
    out["options"] = f"{_PG_SESSION_OPTIONS} {given or ''}".strip()
    return out


_IDLE_PING_SECONDS = 2.0


def _ping_stale_connections(engine: Engine) -> None:
    """Check a pooled PostgreSQL connection on checkout, without a round trip when it is busy.

    SQLAlchemy's ``pool_pre_ping`` costs a round trip on every checkout: two per push,
    a wake-up of the database backend each, on a host where the backend shares the
    cores with the workers.  Instead a connection is pinged only if it sat idle for
    more than ``_IDLE_PING_SECONDS``, or if its socket became readable while idle (a
    healthy idle connection has nothing to read; a backend that was terminated or a
    server that restarted has sent its FATAL notice and closed).  A failed ping makes
    the pool replace the connection (`DisconnectionError`), so a database restart
    costs no request.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None:
            return  # a new connection
        try:
            readable = bool(select.select([dbapi_connection.fileno()], [], [], 0)[0])
        except (OSError, ValueError):
            readable = True
        if not readable and time.monotonic() - idle_since < _IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure means: replace it
            raise DisconnectionError("stale pooled connection") from exc
        if not alive:
            raise DisconnectionError("stale pooled connection")


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


class _Checkpointer:
    """Checkpoints a SQLite database from a thread of its own, outside the write lock.

    Woken after each write transaction; runs a PASSIVE checkpoint (it copies what the WAL
    holds into the database without waiting for, or blocking, readers and writers: a push
    can commit meanwhile), then waits ``_CHECKPOINT_INTERVAL`` so that one checkpoint
    covers several commits, as SQLite's automatic one (every ~1,000 pages) did.  The
    checkpoint is SQLite's own: it fsyncs the WAL before it copies and the database before
    the WAL may be reused, so nothing acknowledged depends on it.  Its connection is opened
    for each checkpoint (read-write, never creating a file) and the thread ends when idle.
    """

    def __init__(self, database: str) -> None:
        self._database = database
        self._wake = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        self._wake.set()
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sealbox-sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(_CHECKPOINT_IDLE_SECONDS)
            with self._guard:
                if not woken and not self._wake.is_set():
                    self._thread = None
                    return
                self._wake.clear()
            try:
                self.checkpoint()
            except sqlite3.Error:
                pass  # a database that went away, or busy: the next commit wakes us again
            time.sleep(_CHECKPOINT_INTERVAL)

    def checkpoint(self) -> None:
        uri = "file:" + urllib.parse.quote(self._database) + "?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()


_CHECKPOINT_INTERVAL = 0.2
_CHECKPOINT_IDLE_SECONDS = 5.0
_CHECKPOINTERS: weakref.WeakKeyDictionary[Engine, _Checkpointer] = weakref.WeakKeyDictionary()


def _checkpointer(engine: Engine) -> _Checkpointer | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    with _WRITE_LOCKS_GUARD:
        checkpointer = _CHECKPOINTERS.get(engine)
        if checkpointer is None:
            checkpointer = _CHECKPOINTERS[engine] = _Checkpointer(database)
        return checkpointer


class _TransactionsFirst:
    """Keeps this process's other Python work out of the way of its write transactions.

    A write transaction holds its organisation's lock (SQLite: the database's) while
    its Python code runs: the statements' driver work, the DAG rules, the receipt.
    Python threads share one interpreter lock, taken in turns, so a push parsing its
    envelopes in the next thread made the transaction take twice as long (7 ms alone,
    15-21 ms beside a parse, measured), and every other writer of the organisation
    waited that much longer.  Work that can wait runs in short slices
    (`outside_transactions`); a slice does not start while a write transaction of
    this process is open, and a transaction waits for the running slices (a fraction
    of a millisecond) before it starts.  Transactions never wait for each other here,
    nor slices for each other.  A slice waits at most `_SLICE_MAX_WAIT`: on PostgreSQL
    the transactions of several organisations (and the short nonce transactions of
    signed reads) may overlap without pause, and parsing must not starve behind them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._transactions = 0  # open or about to start
        self._slices = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._cond:
            self._transactions += 1
            while self._slices:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._transactions -= 1
                if not self._transactions:
                    self._cond.notify_all()

    @contextmanager
    def slice(self) -> Iterator[None]:
        with self._cond:
            deadline = time.monotonic() + _SLICE_MAX_WAIT
            while self._transactions:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._slices += 1
        try:
            yield
        finally:
            with self._cond:
                self._slices -= 1
                if not self._slices and self._transactions:
                    self._cond.notify_all()


_SLICE_MAX_WAIT = 0.05  # seconds; a push's transaction takes 5-20 ms
_TURNS = _TransactionsFirst()


def outside_transactions() -> AbstractContextManager[None]:
    """A short slice (well under a millisecond) of GIL-bound work that can wait for this
    process's open write transactions (`_TransactionsFirst`): parsing pushed envelopes."""
    return _TURNS.slice()


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite: BEGIN IMMEDIATE). Commits on success, rolls back on error.

    From its start (SQLite: once it holds the write lock) to its end this process's
    other work waits between its slices (`outside_transactions`).  SQLite: after the
    lock is released, the checkpointer is woken (`_Checkpointer`).
    """
    lock = _write_lock(engine)
    with lock.hold() if lock is not None else nullcontext(), _TURNS.transaction():
        with engine.connect() as conn:
            conn = conn.execution_options(sealbox_write=True)
            with conn.begin():
                yield conn
    checkpointer = _checkpointer(engine) if lock is not None else None
    if checkpointer is not None:
        checkpointer.committed()


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: one consistent snapshot for all its statements.

    PostgreSQL: REPEATABLE READ (READ COMMITTED would give each statement its own
    snapshot; a read-only transaction never fails to serialise).  SQLite: a deferred
    transaction reads one snapshot from its first read on.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


@contextmanager
def stable_reads(engine: Engine) -> Iterator[Connection]:
    """Reads of rows that never change once committed (a complete subtree of the log, the
    envelope ids under a checkpoint): no snapshot is needed, so PostgreSQL runs them in
    autocommit, one round trip each batch, without the BEGIN and COMMIT of `read_tx`."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def fetch(engine: Engine, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of one read statement (``?`` placeholders), outside any transaction.

    PostgreSQL runs it in autocommit: one round trip, where a transaction would add
    its BEGIN and ROLLBACK.  Request authentication reads its key this way.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            sql = sql.replace("?", "%s")
        return [tuple(row) for row in conn.exec_driver_sql(sql, tuple(params))]


def ping(engine: Engine) -> None:
    """Raise if the database is unreachable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def engine_for(settings: Settings) -> Engine:
    if settings.is_sqlite:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)


_LOOKUP_CHUNK = 500

# PostgreSQL: many fixed-width values travel as one bytea parameter (psycopg dumps a
# ``bytea[]`` element by element, ~0.8 ms for 200 ids) and are cut apart in the server,
# row k of ``_PG_ROW_INDEX`` taking slice k.  Parameters: the row count, then the bytea.
_PG_ROW_INDEX = "generate_series(0, CAST(%s AS integer) - 1) AS k"


def _pg_slice(width: int) -> str:
    """Row k's value of a column packed into one bytea parameter of ``width``-byte values."""
    return f"substring(CAST(%s AS bytea) FROM k * {width} + 1 FOR {width})"


def _fixed_width(values: list[Any]) -> int | None:
    """The common length of ``values`` if they are all bytes of one non-zero length."""
    if not values or not isinstance(values[0], bytes) or not values[0]:
        return None
    width = len(values[0])
    return width if all(isinstance(v, bytes) and len(v) == width for v in values) else None


class Pending:
    """The result of one statement of a `Batch`, filled in by `Batch.run`."""

    __slots__ = ("rowcount", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.rowcount = -1


@dataclass(slots=True)
class _Op:
    sql: str
    params: Any
    many: bool
    pending: Pending
    copy_types: list[str] | None = None  # PostgreSQL COPY: the columns' types


class Batch:
    """Statements sent to the database together, in order, inside the caller's transaction.

    PostgreSQL gets the lot in one round trip (psycopg pipeline mode).  Why it
    matters: a push holds its organisation's lock while it talks to the database,
    and on a busy 2-core host each round trip is a wake-up of the database backend
    that queues behind the request workers for a CPU; statement by statement, a
    push held the lock for 13 round trips, batched it holds it for three (reads,
    the envelopes' COPY, the other writes with the commit).  SQLite runs
    in-process, so its statements simply run in order.

    SQL is written with ``?`` placeholders.  `add_lookup` reads the rows matching a
    set of keys with a plan that does not depend on the database's statistics.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._postgres = conn.dialect.name == "postgresql"
        self._queued: list[_Op] = []

    @property
    def postgres(self) -> bool:
        """Whether statements go to PostgreSQL (callers may then use its array forms)."""
        return self._postgres

    def add(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> Pending:
        """Queue one statement (``many``: ``params`` is a list of parameter rows; with no
        rows there is nothing to run and the result is settled here)."""
        pending = Pending()
        if many and not params:
            pending.rowcount = 0
            return pending
        if self._postgres:
            sql = sql.replace("?", "%s")
        self._queued.append(_Op(sql, params, many, pending))
        return pending

    def add_rows(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> Pending:
        """Queue the insertion of ``rows`` (values for ``columns``) into ``table``.

        PostgreSQL, when every column holds one value for all rows or bytes of one width
        (head rows: org, report id, envelope id): one ``INSERT ... SELECT`` with the
        columns packed (`_packed_rows`), in the pipeline.  One statement instead of one
        per row: the database starts its executor once, and psycopg does no per-row
        work (about 3 ms of database CPU and 1.5 ms of worker CPU for 100 heads).
        Other rows (envelopes, with their variable-length ciphertext): binary ``COPY``
        (the column types come from the table model), its own round trip between
        pipelines: for a push's 100 envelopes it costs the worker half the CPU of
        pipelined ``INSERT``s (psycopg dumps COPY rows in C; 1.2 against 2.2 ms here,
        under the GIL) and the database less too.  SQLite: ``executemany`` of an
        ``INSERT``.
        """
        names = ", ".join(columns)
        if not self._postgres or not rows:
            marks = ", ".join("?" * len(columns))
            return self.add(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows, many=True)
        packed = self._packed_rows(table, columns, rows)
        if packed is not None:
            select, params = packed
            return self.add(f"INSERT INTO {table.name} ({names}) {select}", params)
        pending = Pending()
        types = [self._type_of(table, name) for name in columns]
        sql = f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)"
        self._queued.append(_Op(sql, rows, True, pending, types))
        return pending

    def delete_rows(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> Pending:
        """Queue the deletion of the rows of ``table`` whose ``columns`` equal one of ``rows``.

        PostgreSQL, for packable rows (see `add_rows`): one statement that finds each
        row by an index probe (``OFFSET 0`` keeps the planner from turning the probes
        into a join planned from statistics) and deletes them by ``ctid`` (a TID scan).
        Otherwise, and on SQLite: ``executemany`` of a ``DELETE``.
        """
        where = " AND ".join(f"{name} = ?" for name in columns)
        packed = self._packed_rows(table, columns, rows) if self._postgres and rows else None
        if packed is None:
            return self.add(f"DELETE FROM {table.name} WHERE {where}", rows, many=True)
        select, params = packed
        probe = " AND ".join(f"t.{name} = p.{name}" for name in columns)
        sql = (
            f"DELETE FROM {table.name} WHERE ctid = ANY(ARRAY(SELECT m.ctid FROM "
            f"({select}) AS p, LATERAL (SELECT t.ctid FROM {table.name} AS t "
            f"WHERE {probe} OFFSET 0) AS m))"
        )
        return self.add(sql, params)

    def _type_of(self, table: Table, column: str) -> str:
        return str(table.c[column].type.compile(dialect=self._conn.dialect)).lower()

    def _packed_rows(
        self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]] | None:
        """``SELECT`` producing ``rows`` from a handful of parameters, or None if a column
        is neither constant nor bytes of one width.

        A constant column is one parameter; a fixed-width bytes column is all its values
        concatenated in one bytea (`_pg_slice`).
        """
        exprs: list[str] = []
        params: list[Any] = [len(rows)]
        for i, name in enumerate(columns):
            values = [row[i] for row in rows]
            first = values[0]
            if all(v == first for v in values) and first is not None:
                exprs.append(f"CAST(%s AS {self._type_of(table, name)}) AS {name}")
                params.append(first)
                continue
            width = _fixed_width(values)
            if width is None:
                return None
            exprs.append(f"{_pg_slice(width)} AS {name}")
            params.append(b"".join(values))
        select = f"SELECT {', '.join(exprs)} FROM {_PG_ROW_INDEX}"
        # The row count is the first parameter in the text but the last in position.
        return select, (*params[1:], params[0])

    def add_lookup(
        self, select: str, where: str, fixed: Sequence[Any], column: str, keys: Sequence[bytes]
    ) -> list[Pending]:
        """Queue ``{select} WHERE {where} AND {column} IN keys`` (``fixed`` fills ``where``),
        one statement per 500 keys.

        PostgreSQL probes the index once per key, whatever its statistics say: with
        ``column = ANY(...)``, statistics lagging a fast-growing organisation made it
        read all of the organisation's rows and filter them (2,000 rows for 11 keys).
        Fixed-width keys (ids) travel packed in one bytea (`_pg_slice`).  ``OFFSET 0``
        keeps the planner from flattening the per-key subquery into a join it would plan
        from the same statistics.  SQLite plans ``IN (?, ...)`` as one index probe per key.
        """
        out = []
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            part = list(keys[start : start + _LOOKUP_CHUNK])
            width = _fixed_width(part)
            if self._postgres and width:
                query = (
                    f"SELECT m.* FROM {_PG_ROW_INDEX}, LATERAL ("
                    f"{select} WHERE {where} AND {column} = "
                    f"{_pg_slice(width)} OFFSET 0) AS m"
                )
                out.append(self.add(query, (len(part), *fixed, b"".join(part))))
            elif self._postgres:
                query = f"{select} WHERE {where} AND {column} = ANY(CAST(? AS bytea[]))"
                out.append(self.add(query, (*fixed, part)))
            else:
                marks = ",".join("?" * len(part))
                out.append(
                    self.add(f"{select} WHERE {where} AND {column} IN ({marks})", (*fixed, *part))
                )
        return out

    def run(self, *, commit: bool = False) -> None:
        """Execute everything queued; raises the first database error.

        ``commit``: end the transaction with this batch (on PostgreSQL in the same
        round trip); nothing may run on the connection afterwards.  The enclosing
        `write_tx` then finds the transaction done and its own commit is a no-op.
        """
        queued, self._queued = self._queued, []
        if self._postgres:
            self._run_postgres(queued, commit)
            return
        # The sqlite3 connection itself, inside the transaction SQLAlchemy began: a statement
        # through `exec_driver_sql` costs ~45 us of Python, ~1.5 us directly, and a push
        # runs some 20 of them while it holds the write lock.
        raw: sqlite3.Connection = self._conn.connection.driver_connection  # type: ignore[assignment]
        for op in queued:
            cursor = (
                raw.executemany(op.sql, op.params)
                if op.many
                else raw.execute(op.sql, tuple(op.params))
            )
            op.pending.rowcount = cursor.rowcount
            if cursor.description is not None:
                op.pending.rows = cursor.fetchall()
            cursor.close()
        if commit:
            raw.execute("COMMIT")

    def _run_postgres(self, queued: list[_Op], commit: bool) -> None:
        """Pipelines of statements, split at each ``COPY`` (which cannot be pipelined)."""
        raw: Any = self._conn.connection.driver_connection
        segment: list[_Op] = []
        for op in queued:
            if op.copy_types is None:
                segment.append(op)
                continue
            self._pipeline(raw, segment, commit=False)
            segment = []
            with raw.cursor() as cursor, cursor.copy(op.sql) as copy:
                copy.set_types(op.copy_types)
                for row in op.params:
                    copy.write_row(row)
            op.pending.rowcount = len(op.params)
        self._pipeline(raw, segment, commit=commit)

    @staticmethod
    def _pipeline(raw: Any, ops: list[_Op], *, commit: bool) -> None:
        if not ops and not commit:
            return
        cursors = []
        with raw.pipeline():
            for op in ops:
                cursor = raw.cursor(binary=True)
                if op.many:
                    cursor.executemany(op.sql, op.params)
                else:
                    cursor.execute(op.sql, op.params)
                cursors.append((cursor, op))
            if commit:
                raw.commit()
        for cursor, op in cursors:
            op.pending.rowcount = cursor.rowcount
            if cursor.description is not None:
                op.pending.rows = [tuple(r) for r in cursor.fetchall()]
            cursor.close()
