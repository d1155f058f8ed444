"""Crash safety (BRIEF "faulty world"; docs/PROTOCOL.md §8.2): SIGKILL the server mid-push.

Several devices push batches in a loop against a real ``sealbox-server``
process; the test kills it with SIGKILL at random moments, restarts it, and
the devices retry whatever was not acknowledged (their outbox).  At the end:
every envelope a response acknowledged is in the feed with the server_seq it
was acknowledged with, every envelope is stored exactly once, server sequence
numbers are 1..N without gaps, and a final retry of everything gives only
duplicates.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from pathlib import Path

import httpx2
import pytest
from live_server import LiveServer
from server_api import ADMIN_TOKEN, Api, b64, create_org
from sqlalchemy import text

from crypto import parse_envelope
from server.db import make_engine
from sync.messages import b64decode


def _run(
    tmp_path: Path,
    *,
    kills: int,
    devices: int,
    batches: int,
    workers: int,
    database_url: str | None = None,
) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {"SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN, "SEALBOX_WORKERS": str(workers)}
    if database_url:
        env["SEALBOX_DATABASE_URL"] = database_url
    server = LiveServer(tmp_path / "data", tmp_path / "server.log", env=env)
    server.migrate()
    server.start()
    http = httpx2.Client(base_url=server.base_url, timeout=30)
    org = create_org(Api(http, server.base_url))
    chains = [org.add_device() for _ in range(devices)]
    outboxes = []
    for chain in chains:
        report = secrets.token_bytes(16)
        parent: list[bytes] = []
        for _ in range(batches * 20):
            env = chain.revision(org.roster, report, parent, os.urandom(256))
            parent = [env.id]
        outboxes.append(list(chain.sent))
    acked: dict[bytes, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def device_loop(index: int) -> None:
        chain, box = chains[index], outboxes[index]
        with httpx2.Client(base_url=server.base_url, timeout=10) as client:
            api = Api(client, server.base_url)
            while box and not stop.is_set():
                batch = box[:20]
                body = {"envelopes": [b64(e.to_bytes()) for e in batch]}
                try:
                    r = api.call("POST", org.path + "/push", body, key=chain.key)
                except httpx2.TransportError:
                    time.sleep(0.05)  # the server is down: back off and retry
                    continue
                if r.status_code != 200:
                    time.sleep(0.05)
                    continue
                results = r.json()["results"]
                with lock:
                    for env, res in zip(batch, results, strict=True):
                        assert res["status"] in ("created", "duplicate"), res
                        seq = res["server_seq"]
                        assert acked.setdefault(env.id, seq) == seq, (
                            "acknowledged twice differently"
                        )
                del box[: len(batch)]

    threads = [threading.Thread(target=device_loop, args=(i,)) for i in range(devices)]
    for t in threads:
        t.start()
    rng = random.Random()
    pending_at_kill = []
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.02, 0.2))
            pending_at_kill.append(sum(map(len, outboxes)))
            server.kill()
            server.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert not any(outboxes)
        assert pending_at_kill[0] > 0, "the first kill must interrupt work in progress"
        # Everything acknowledged is stored once, with its acknowledged sequence number.
        seen: dict[bytes, int] = {}
        cursor = ""
        while True:
            page = org.changes(cursor).json()
            for item in page["items"]:
                env = parse_envelope(b64decode(item["envelope"]))
                assert env.id not in seen, "stored twice"
                seen[env.id] = item["server_seq"]
            cursor = page["cursor"]
            if not page["more"]:
                break
        total = sum(len(c.sent) for c in chains)
        assert len(acked) == total
        assert {k: v for k, v in seen.items() if k in acked} == acked
        assert sorted(seen.values()) == list(range(1, len(seen) + 1))
        assert set(seen) == set(acked)
        for chain in chains:
            r = org.push(chain, chain.sent[:20])
            assert {x["status"] for x in r.json()["results"]} == {"duplicate"}
    finally:
        stop.set()
        http.close()
        server.stop()
    backend = "postgresql" if database_url else "sqlite"
    assert f'"backend": "{backend}"' in server.log_path.read_text()


def test_sigkill_during_pushes_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    _run(tmp_path, kills=3, devices=3, batches=8, workers=1)  # one worker restarts fastest


@pytest.mark.postgres
def test_sigkill_during_pushes_on_postgresql(tmp_path: Path) -> None:
    url = os.environ.get("SEALBOX_TEST_DATABASE_URL")
    if not url:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: PostgreSQL crash test skipped")
    schema = "sbx_crash_" + secrets.token_hex(6)
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        # libpq options: the server process works in the fresh schema only.
        sep = "&" if "?" in url else "?"
        _run(
            tmp_path,
            kills=3,
            devices=3,
            batches=8,
            workers=1,
            database_url=f"{url}{sep}options=-csearch_path%3D{schema}",
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.slow
def test_sigkill_soak(tmp_path: Path) -> None:
    # A share of the slow budget (the whole slow suite shares SEALBOX_SLOW_BUDGET_SECONDS).
    budget = float(os.environ.get("SEALBOX_SLOW_BUDGET_SECONDS", "600"))
    deadline = time.monotonic() + min(budget * 0.1, 120)
    i = 0
    while True:
        _run(tmp_path / f"round{i}", kills=6, devices=4, batches=10, workers=2)
        i += 1
        if time.monotonic() > deadline:
            break
