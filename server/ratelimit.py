"""Fixed-window rate limits keyed by verified identity (device, org), never by IP.

Theory of operation
-------------------
A limit is N requests per one-minute period, the period being ``floor(unix time / 60)``:
every worker and node that reads the same clock and the same counter agrees on it, so a
limit holds across all of them (PROTOCOL §11.1).  ``hit_many`` counts one request for each
(scope, key, limit) it is given, in one atomic statement, and answers None (allowed) or the
first scope over its limit with the seconds until the period ends (429 ``Retry-After``);
``hit`` is the same for one scope.

Where the counters live (`make_limiter`):

* ``SEALBOX_REDIS_URL`` set: in Redis, through the ``limits`` library's fixed-window
  strategy (``INCR`` + ``EXPIRE`` in one script; its minute starts at a key's first hit
  rather than on the clock's minute, which changes nothing about the limit holding).
  If Redis cannot be reached, requests are allowed (and ``rate_limit_storage_unavailable``
  is logged once a minute): an outage of the limiter must not take the service down.
* PostgreSQL: the UNLOGGED ``rate_counters`` table, one multi-row ``INSERT .. ON CONFLICT
  DO UPDATE .. RETURNING`` in autocommit: one round trip, no WAL flush.
* SQLite: the same table in a scratch database beside the main one
  (``<database>-ratelimit``, WAL, ``synchronous=OFF``), so counting never queues behind a
  push for SQLite's single writer, nor pays its fsync.  Only one server runs on a SQLite
  data directory, and all its workers share the file.
* `LocalRateLimiter` counts in process memory (per process; tests and in-memory databases).

A counter is at most a minute of history: losing it (crash, Redis restart) only forgets
counts, never refuses anyone.  Periods older than the previous one are pruned when a process
sees a new period begin: a counter tells when a device was active, so it is kept minutes only
(and ``sealbox-server backup`` leaves it out).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine, create_engine, event

from server.settings import Settings
from server.tables_ratelimit import RateCounter

__all__ = [
    "DatabaseRateLimiter",
    "Hit",
    "Limited",
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "make_limiter",
]

PERIOD_SECONDS = 60
Hit = tuple[str, bytes, int]
"""(scope, key, limit per minute)."""

_log = structlog.get_logger("sealbox.ratelimit")


@dataclass(frozen=True, slots=True)
class Limited:
    """The first scope whose limit the request is over, and when its period ends."""

    scope: str
    retry_after: int


class RateLimiter(Protocol):
    def hit_many(self, *hits: Hit) -> Limited | None:
        """Count one request under each (scope, key, limit); None if every limit allows it."""
        ...

    def hit(self, scope: str, key: bytes, limit: int) -> int | None:
        """Count one request; None if allowed, else the seconds until the period ends."""
        ...

    def close(self) -> None: ...


class _Base:
    def hit_many(self, *hits: Hit) -> Limited | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def hit(self, scope: str, key: bytes, limit: int) -> int | None:
        limited = self.hit_many((scope, key, limit))
        return None if limited is None else limited.retry_after

    def close(self) -> None:
        pass


def _limited(now: float, period: int, scope: str | None) -> Limited | None:
    if scope is None:
        return None
    return Limited(scope, max(1, int((period + 1) * PERIOD_SECONDS - now + 0.999)))


class LocalRateLimiter(_Base):
    """Counters in this process only (with N processes, up to N times the limit)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, bytes], tuple[int, int]] = {}

    def hit_many(self, *hits: Hit) -> Limited | None:
        now = self._clock()
        period = int(now // PERIOD_SECONDS)
        over: str | None = None
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] == period}
            for scope, key, limit in hits:
                start, count = self._counts.get((scope, key), (period, 0))
                if start != period:
                    count = 0
                count += 1
                self._counts[(scope, key)] = (period, count)
                if count > limit and over is None:
                    over = scope
        return _limited(now, period, over)


_TABLE = RateCounter.__tablename__


class DatabaseRateLimiter(_Base):
    """Counters in a SQL table, shared by every process that uses the same database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"
        self._mark = "%s" if self._pg else "?"
        self._pruned = -1

    def hit_many(self, *hits: Hit) -> Limited | None:
        if not hits:
            return None
        now = self._clock()
        period = int(now // PERIOD_SECONDS)
        m = self._mark
        values = ", ".join(f"({m}, {m}, {m}, 1)" for _ in hits)
        sql = (
            f"INSERT INTO {_TABLE} (scope, key, period, hits) VALUES {values} "
            f"ON CONFLICT (scope, key, period) DO UPDATE SET hits = {_TABLE}.hits + 1 "
            "RETURNING scope, key, hits"
        )
        params: list[Any] = []
        for scope, key, _ in hits:
            params += [scope, key, period]
        with self._engine.connect() as conn:
            if self._pg:  # one round trip, no BEGIN/COMMIT
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            counts = {
                (scope, bytes(key)): n for scope, key, n in conn.exec_driver_sql(sql, tuple(params))
            }
            # Prune at the first hit of each period in this process, and now and then
            # besides: a counter says when a device was active, so it lives minutes only.
            if period != self._pruned or secrets.randbelow(512) == 0:
                self._pruned = period
                conn.exec_driver_sql(f"DELETE FROM {_TABLE} WHERE period < {m}", (period - 1,))
            conn.commit()
        over = next((s for s, key, limit in hits if counts[(s, key)] > limit), None)
        return _limited(now, period, over)


class RedisRateLimiter(_Base):
    """Counters in Redis (``limits``' fixed window), shared by every node that uses it."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        from limits import storage, strategies

        self._storage = storage.storage_from_string(url)
        self._limiter = strategies.FixedWindowRateLimiter(self._storage)
        self._clock = clock
        self._warned = 0.0

    def hit_many(self, *hits: Hit) -> Limited | None:
        from limits import RateLimitItemPerMinute

        over: str | None = None
        try:
            for scope, key, limit in hits:
                allowed = self._limiter.hit(RateLimitItemPerMinute(limit), scope, key.hex())
                if not allowed and over is None:
                    over = scope
        except Exception as exc:  # noqa: BLE001 - any storage failure: allow, say so
            now = self._clock()
            if now - self._warned > PERIOD_SECONDS:
                self._warned = now
                _log.warning("rate_limit_storage_unavailable", error=type(exc).__name__)
            return None
        if over is None:
            return None
        scope, key, limit = next(h for h in hits if h[0] == over)
        try:
            stats = self._limiter.get_window_stats(RateLimitItemPerMinute(limit), scope, key.hex())
            retry = int(stats.reset_time - time.time() + 0.999)
        except Exception:  # noqa: BLE001 - the count said no; the reset time is a courtesy
            retry = PERIOD_SECONDS
        return Limited(over, max(1, min(retry, PERIOD_SECONDS)))


def _sqlite_scratch_engine(database: str | None) -> Engine | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(f"{database}-ratelimit")
    engine = create_engine(f"sqlite:///{path.as_posix()}", connect_args={"timeout": 10})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    RateCounter.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
    return engine


class _OwnedEngine(DatabaseRateLimiter):
    def close(self) -> None:
        self._engine.dispose()


def make_limiter(settings: Settings, engine: Engine) -> RateLimiter:
    """The limiter for this deployment (see the module docstring)."""
    if settings.redis_url is not None and settings.redis_url.get_secret_value():
        return RedisRateLimiter(settings.redis_url.get_secret_value())
    if engine.dialect.name == "postgresql":
        return DatabaseRateLimiter(engine)
    scratch = _sqlite_scratch_engine(engine.url.database)
    if scratch is None:
        return LocalRateLimiter()
    return _OwnedEngine(scratch)
