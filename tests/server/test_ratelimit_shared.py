"""Rate limits shared by every worker and node (PROTOCOL §11.1, server/ratelimit.py).

Counted per process, 2 workers allowed twice the limit and N nodes N times.  The
counters now live in the database (SQLite: a scratch file beside it; PostgreSQL: an
UNLOGGED table) or in Redis, so the limit holds across workers and nodes.  A round whose
requests straddle a minute boundary (two periods, so twice the limit is right) is run
again, at most twice.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from live_server import LiveServer
from prometheus_client.mmap_dict import MmapedDict
from server_api import ADMIN_TOKEN, Api, create_org
from sqlalchemy import Engine, text

from server import migrate
from server.db import make_engine
from server.ratelimit import (
    PERIOD_SECONDS,
    DatabaseRateLimiter,
    Limited,
    RedisRateLimiter,
    make_limiter,
)
from server.settings import Settings

REDIS_URL = os.environ.get("SEALBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_URL = os.environ.get("SEALBOX_TEST_DATABASE_URL")


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the limiters themselves ---------------------------------------------------------------


def _two_limiters(engine: Engine, tmp_path: Path, clock: Clock) -> list:
    if engine.dialect.name == "sqlite":
        # What make_limiter gives each SQLite worker: the scratch file beside the database,
        # through an engine (a pool) of its own, as in two processes.
        limiters = [make_limiter(Settings(data_dir=tmp_path), engine) for _ in range(2)]
        assert all(isinstance(lim, DatabaseRateLimiter) for lim in limiters)
        for lim in limiters:
            lim._clock = clock
        return limiters
    return [DatabaseRateLimiter(engine, clock=clock), DatabaseRateLimiter(engine, clock=clock)]


def test_two_database_limiters_share_one_count(engine: Engine, tmp_path: Path) -> None:
    clock = Clock(1_000_000 * PERIOD_SECONDS + 10.0)
    a, b = _two_limiters(engine, tmp_path, clock)
    try:
        device, org = secrets.token_bytes(16), secrets.token_bytes(16)
        results = []
        for i in range(10):
            limiter = (a, b)[i % 2]
            results.append(limiter.hit_many(("device", device, 6), ("organisation", org, 100)))
        assert results[:6] == [None] * 6
        assert results[6:] == [Limited("device", 50)] * 4  # 10 s into the period: 50 s left
        # The organisation counted every request, allowed or not.
        assert a.hit_many(("organisation", org, 10)) == Limited("organisation", 50)  # 11th
        clock.now += 50  # the next period starts afresh
        assert b.hit("device", device, 6) is None
    finally:
        a.close()
        b.close()


def test_database_limiter_counts_atomically_under_threads(engine: Engine, tmp_path: Path) -> None:
    clock = Clock(2_000_000 * PERIOD_SECONDS + 1.0)
    limiters = _two_limiters(engine, tmp_path, clock)
    key = secrets.token_bytes(16)
    allowed = []
    lock = threading.Lock()

    def worker(limiter) -> None:
        mine = sum(limiter.hit("device", key, 120) is None for _ in range(50))
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=worker, args=(limiters[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for lim in limiters:
        lim.close()
    assert sum(allowed) == 120  # 300 hits, exactly the limit allowed


def test_a_counter_outlives_its_period_by_one_minute_only(engine: Engine) -> None:
    # A counter says when a device was active (PROTOCOL §11.1, BRIEF S2): kept minutes only.
    clock = Clock(3_000_000 * PERIOD_SECONDS)
    limiter = DatabaseRateLimiter(engine, clock=clock)
    for _ in range(4):
        limiter.hit("device", b"x", 10)
        limiter.hit("device", b"y", 10)
        clock.now += PERIOD_SECONDS
    with engine.begin() as conn:
        periods = [p for (p,) in conn.execute(text("SELECT period FROM rate_counters"))]
    assert sorted(periods) == [3_000_002, 3_000_002, 3_000_003, 3_000_003]


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379: Redis rate-limit tests skipped")
    yield REDIS_URL


def test_two_redis_limiters_share_one_count(redis_url: str) -> None:
    a, b = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    key = secrets.token_bytes(16)
    results = [(a, b)[i % 2].hit("device", key, 5) for i in range(8)]
    assert results[:5] == [None] * 5
    assert all(r is not None and 1 <= r <= PERIOD_SECONDS for r in results[5:])


def test_redis_unreachable_allows_requests() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert limiter.hit("device", b"k", 1) is None
    assert limiter.hit("device", b"k", 1) is None


# -- real servers: 2 workers, 2 nodes --------------------------------------------------------

LIMIT = 20


def _burst(urls: list[str], org, device, count: int) -> tuple[list[int], float, float]:
    """``count`` signed requests, each on a new connection (so the kernel spreads them
    over the workers), round robin over ``urls``, from 4 threads; returns the statuses
    and the time span."""
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        url = urls[i % len(urls)]
        with httpx2.Client(base_url=url, timeout=30) as client:
            r = Api(client, url).call("GET", org.path + "/roster", key=device.key)
        with lock:
            statuses.append(r.status_code)

    def loop(offset: int) -> None:
        for i in range(offset, count, 4):
            one(i)

    start = time.time()
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return statuses, start, time.time()


def _statuses_in_one_period(run: Callable[[], tuple[list[int], float, float]]) -> list[int]:
    """Run ``run`` (a burst from a fresh device) until one falls inside one period."""
    for _ in range(3):
        statuses, start, end = run()
        if int(start // PERIOD_SECONDS) == int(end // PERIOD_SECONDS):
            return statuses
    raise AssertionError("three rounds in a row straddled a minute boundary")


def _requests_by_worker(data_dir: Path) -> dict[str, float]:
    """Requests each worker has answered so far, by worker: prometheus_client's
    multiprocess mode keeps one counter file per worker pid."""
    counts: dict[str, float] = {}
    for path in (data_dir / "metrics").glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        counts[path.name] = sum(v for key, v, *_ in values if "sealbox_requests_total" in key)
    return counts


def _wait_for_workers(live: LiveServer, workers: int) -> None:
    """``/readyz`` answers once one worker listens: wait until every worker has answered
    one (each request on a new connection, which whichever worker is accepting takes)."""
    deadline = time.monotonic() + 60
    while len(_requests_by_worker(live.data_dir)) < workers:
        assert time.monotonic() < deadline, "not every worker answered within 60 s"
        with httpx2.Client(timeout=5) as http:
            assert http.get(live.base_url + "/readyz").status_code == 200


def _burst_on_every_worker(live: LiveServer, org, count: int) -> list[int]:
    """A burst from a fresh device, within one period, that every worker took part in.

    Which worker takes a connection is the kernel's choice: on a busy machine one worker
    may take a whole burst, which would show nothing about sharing, so that round is run
    again with a new device."""
    for _ in range(5):
        before = _requests_by_worker(live.data_dir)
        statuses = _statuses_in_one_period(
            lambda: _burst([live.base_url], org, org.add_device(), count)
        )
        after = _requests_by_worker(live.data_dir)
        if all(after[w] > before.get(w, 0) for w in after):
            return statuses
    raise AssertionError("five bursts in a row were all taken by one worker")


def _setup(base_url: str):
    client = httpx2.Client(base_url=base_url, timeout=30)
    return client, create_org(Api(client, base_url))


def test_two_workers_share_the_device_limit(tmp_path: Path) -> None:
    live = LiveServer(
        tmp_path / "data",
        tmp_path / "server.log",
        env={
            "SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN,
            "SEALBOX_WORKERS": "2",
            "SEALBOX_DEVICE_REQUESTS_PER_MINUTE": str(LIMIT),
        },
    )
    live.migrate()
    client = None
    try:
        live.start()
        _wait_for_workers(live, 2)
        client, org = _setup(live.base_url)
        statuses = _burst_on_every_worker(live, org, 3 * LIMIT)
        assert statuses.count(200) == LIMIT, statuses  # per-worker counting allowed ~2x
        assert statuses.count(429) == 2 * LIMIT
    finally:
        if client is not None:
            client.close()
        live.stop()


def _pg_schema_url() -> tuple[str, str]:
    assert PG_URL
    schema = "sbx_rate_" + secrets.token_hex(6)
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.mark.postgres
@pytest.mark.parametrize("storage", ["database", "redis"])
def test_two_nodes_on_one_postgresql_share_the_device_limit(tmp_path: Path, storage: str) -> None:
    if not PG_URL:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: PostgreSQL node test skipped")
    if storage == "redis" and not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379: Redis node test skipped")
    schema, url = _pg_schema_url()
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    env = {
        "SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN,
        "SEALBOX_DATABASE_URL": url,
        "SEALBOX_WORKERS": "1",
        "SEALBOX_DEVICE_REQUESTS_PER_MINUTE": str(LIMIT),
    }
    if storage == "redis":
        env["SEALBOX_REDIS_URL"] = REDIS_URL
    nodes = [LiveServer(tmp_path / f"n{i}", tmp_path / f"n{i}.log", env=env) for i in range(2)]
    client = None
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        for node in nodes:
            node.start()
        client, org = _setup(nodes[0].base_url)
        bases = [n.base_url for n in nodes]
        statuses = _statuses_in_one_period(lambda: _burst(bases, org, org.add_device(), 3 * LIMIT))
        assert statuses.count(200) == LIMIT, statuses  # per-node counting allowed 2x
        assert statuses.count(429) == 2 * LIMIT
    finally:
        if client is not None:
            client.close()
        for node in nodes:
            node.stop()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
