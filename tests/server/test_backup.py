"""Backups (docs/OPERATIONS.md): `sealbox-server backup` while serving, and a restore drill.

The drill runs the real server and the real `sealbox` CLI (a coordinator and a field
device): back up while serving, push more, restore the older backup, and the clients
repair as PROTOCOL §15.6 says (cursor from another epoch, roster rollback re-posted),
with nothing lost.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from live_server import LiveServer
from server_api import ADMIN_TOKEN, Api, b64, create_org

from tests.cli.conftest import PASSPHRASE, SERVER, Device


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of the drill's own, in its own process group (stopped whole, workers too)."""
    live = LiveServer(
        tmp_path / "server-data",
        tmp_path / "server.log",
        env={"SEALBOX_ADMIN_TOKEN": secrets.token_urlsafe(32)},
    )
    live.migrate()
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def devices(tmp_path: Path, server: LiveServer) -> Callable[[str], Device]:
    """Profiles driven through the real `sealbox` executable (tests/cli/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env.update(
        SEALBOX_PASSPHRASE=PASSPHRASE,
        SEALBOX_ADMIN_TOKEN=server.env["SEALBOX_ADMIN_TOKEN"],
        NO_COLOR="1",
    )
    return lambda name: Device(tmp_path / "homes" / name, dict(env))


def _backup(env: dict[str, str], target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SERVER, "backup", "--to", str(target), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _org(server, devices, *names: str):
    coord = devices("coordinator")
    coord.run("org", "create", "--server", server.base_url, "--name", "Clinic")
    fields = []
    for name in names:
        code = coord.run("invite", "create", "--role", "field").json["code"]
        device = devices(name)
        device.run("enroll", code, "--label", name)
        fields.append(device)
    coord.run("sync")  # admits the enrolled devices into roster v2
    return coord, fields


def _reports(coord) -> dict[str, dict]:
    return {r["fields"]["title"]: r for r in coord.run("reports", "list").json}


@pytest.mark.slow  # about 25 s: some 25 CLI runs and two server starts
def test_restore_drill_older_backup_clients_repair_and_nothing_is_lost(
    server: LiveServer,
    devices: Callable[[str], Device],
    tmp_path: Path,
) -> None:
    coord, (field,) = _org(server, devices, "field")
    first = field.run("report", "new", "-f", "title=before backup").json["report_id"]
    field.run("sync")
    coord.run("sync")

    # The nightly backup, taken while the server runs.
    backup = tmp_path / "nightly.db"
    done = _backup(server.env, backup)
    assert done.returncode == 0, done.stderr
    assert "server key" in done.stdout
    assert oct(backup.stat().st_mode & 0o777) == "0o600"

    # The day goes on: a new report, a coordinator's edit, a new member (roster v3).
    field.run("report", "new", "-f", "title=after backup")
    assert field.run("sync").json["purged"] >= 1  # the field device keeps nothing it sent
    coord.run("sync")
    coord.run("report", "edit", first, "-f", "checked=yes")
    code = coord.run("invite", "create").json["code"]
    devices("second").run("enroll", code)
    assert coord.run("sync").json["roster_version"] == 3
    field.run("report", "new", "-f", "title=written offline")  # not synced yet

    # The disk dies; the operator restores last night's backup.
    server.stop()
    restored = subprocess.run(
        [SERVER, "restore", "--from", str(backup)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restored.returncode == 0, restored.stderr
    server.start()

    healed = coord.run("sync").json
    assert healed["server_went_back"] is True  # §9.2: 409 cursor_from_other_epoch
    assert healed["roster_rollback"] == 2 and healed["roster_reposted"] == 1  # §5.4
    assert healed["republished"] >= 1  # the coordinator's own edit is pushed again
    assert any("went back in time" in w for w in coord.run("status").json["warnings"])

    # The field device pushes what it wrote offline and moves on to the re-posted roster.
    field.run("sync")
    assert field.run("status").json["roster_version"] == 3
    box = field.run("outbox").json
    assert box["count"] == 0 and box["rejected"] == []
    coord.run("sync")

    after = _reports(coord)
    assert set(after) == {"before backup", "after backup", "written offline"}
    assert after["before backup"]["fields"]["checked"] == "yes"
    assert all(not r["conflicts"] for r in after.values())


def test_backup_while_pushing_is_a_consistent_snapshot(tmp_path: Path) -> None:
    live = LiveServer(
        tmp_path / "data", tmp_path / "live.log", env={"SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    live.migrate()
    live.start()
    stop = threading.Event()
    acked: list[tuple[float, int]] = []  # (time acknowledged, server_seq)
    errors: list[str] = []
    http = None
    try:
        http = httpx2.Client(base_url=live.base_url, timeout=30)
        org = create_org(Api(http, live.base_url))
        chain = org.add_device()
        report = os.urandom(16)

        def pusher() -> None:
            parent: list[bytes] = []
            with httpx2.Client(base_url=live.base_url, timeout=30) as client:
                api = Api(client, live.base_url)
                for _ in range(500):  # bounded: at most 5,000 envelopes
                    if stop.is_set():
                        return
                    batch = []
                    for _ in range(10):
                        env = chain.revision(org.roster, report, parent, os.urandom(512))
                        parent = [env.id]
                        batch.append(env)
                    body = {"envelopes": [b64(e.to_bytes()) for e in batch]}
                    r = api.call("POST", org.path + "/push", body, key=chain.key)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        return
                    now = time.monotonic()
                    acked.extend((now, x["server_seq"]) for x in r.json()["results"])

        thread = threading.Thread(target=pusher)
        thread.start()
        snapshots = []
        try:
            while thread.is_alive() and len(snapshots) < 3:
                started = time.monotonic()
                target = tmp_path / f"backup-{len(snapshots)}.db"
                done = _backup(live.env, target)
                assert done.returncode == 0, done.stderr
                snapshots.append((started, target))
        finally:
            stop.set()
            thread.join(60)
        assert not errors, errors
        assert len(snapshots) == 3, "the pushes ended before three backups were taken"
        during = 0
        for started, target in snapshots:
            db = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
            try:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                seqs = [s for (s,) in db.execute("SELECT server_seq FROM envelopes ORDER BY 1")]
                (last_seq,) = db.execute("SELECT last_seq FROM orgs").fetchone()
            finally:
                db.close()
            # A snapshot of one transaction: sequence 1..N without holes, the org's
            # counter agreeing, and everything acknowledged before the backup began.
            assert seqs == list(range(1, len(seqs) + 1))
            assert last_seq == len(seqs)
            assert {s for t, s in acked if t < started} <= set(seqs)
            during += 0 < len(seqs) < len(acked)
        assert during >= 1, "no backup ran while pushes were going on"
    finally:
        stop.set()
        if http is not None:
            http.close()
        live.stop()


def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env["SEALBOX_DATA_DIR"] = str(tmp_path / "data")
    subprocess.run([SERVER, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    target = tmp_path / "b.db"
    target.write_bytes(b"keep me")
    done = _backup(env, target)
    assert done.returncode == 2 and "--force" in done.stderr
    assert target.read_bytes() == b"keep me"
    done = _backup(env, target, "--force")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes()[:16] == b"SQLite format 3\x00"


def test_restore_refuses_a_damaged_backup_and_leaves_the_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env["SEALBOX_DATA_DIR"] = str(tmp_path / "data")
    subprocess.run([SERVER, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    good = tmp_path / "good.db"
    assert _backup(env, good).returncode == 0
    damaged = tmp_path / "damaged.db"
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * 3996  # page 1 past the file header: the schema's b-tree
    damaged.write_bytes(bytes(data))
    live = tmp_path / "data" / "sealbox.db"
    db = sqlite3.connect(live)
    before = db.execute("SELECT epoch FROM server_meta").fetchone()
    db.close()
    done = subprocess.run(
        [SERVER, "restore", "--from", str(damaged)], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "fails its integrity check; nothing restored" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    db = sqlite3.connect(live)
    try:
        assert db.execute("SELECT epoch FROM server_meta").fetchone() == before
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def test_restore_refuses_while_a_server_has_the_database_open(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data", tmp_path / "live.log")
    live.migrate()
    backup = tmp_path / "b.db"
    try:
        live.start()  # answers /readyz: its workers hold connections to the database
        assert _backup(live.env, backup).returncode == 0
        done = subprocess.run(
            [SERVER, "restore", "--from", str(backup)],
            env=live.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "stop the server first" in done.stderr and "nothing restored" in done.stderr
        assert httpx2.get(live.base_url + "/readyz", timeout=10).status_code == 200
    finally:
        live.stop()
    done = subprocess.run(
        [SERVER, "restore", "--from", str(backup)],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.postgres
def test_backup_of_postgresql_runs_pg_dump(tmp_path: Path) -> None:
    url = os.environ.get("SEALBOX_TEST_DATABASE_URL")
    if not url:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: PostgreSQL backup test skipped")
    env = {**os.environ, "SEALBOX_DATABASE_URL": url, "SEALBOX_DATA_DIR": str(tmp_path)}
    target = tmp_path / "pg.dump"
    done = _backup(env, target)
    if "pg_dump is not installed" in done.stderr:
        assert done.returncode == 1 and "pg_restore" in done.stderr
        pytest.skip("pg_dump is not installed: the guidance was printed")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes()[:5] == b"PGDMP"
