"""Start-up: `serve` refuses a schema that is not the migration head (PROTOCOL §7.5).

A server started on a never-migrated or older database used to bind and answer its
first request with a 500 "no such table".  It now exits before binding, saying what
to run, unless SEALBOX_MIGRATE_ON_START asks it to migrate first.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
from live_server import EXE, ROOT, LiveServer, free_port
from sqlalchemy import text

from server import migrate
from server.db import make_engine


def _serve_until_exit(data_dir: Path, env: dict[str, str] | None = None) -> tuple[int, str, list]:
    """Run `serve` until it exits on its own; probe its port the whole time.

    Returns the exit code, stderr, and every HTTP status the port answered meanwhile.
    """
    port = free_port()
    full_env = {**os.environ, "SEALBOX_DATA_DIR": str(data_dir), **(env or {})}
    if "SEALBOX_DATABASE_URL" not in (env or {}):
        full_env.pop("SEALBOX_DATABASE_URL", None)
    if "SEALBOX_MIGRATE_ON_START" not in (env or {}):
        full_env.pop("SEALBOX_MIGRATE_ON_START", None)
    proc = subprocess.Popen(
        [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )
    answered = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                answered.append(httpx2.get(f"http://127.0.0.1:{port}/v1/server", timeout=1))
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, stderr.decode(), [r.status_code for r in answered]


def test_serve_refuses_a_never_migrated_database_and_says_what_to_run(tmp_path: Path) -> None:
    code, stderr, answered = _serve_until_exit(tmp_path / "data")
    assert code == 3, stderr
    assert "no schema yet" in stderr and "sealbox-server migrate" in stderr
    assert "SEALBOX_MIGRATE_ON_START" in stderr
    assert "no such table" not in stderr and "Traceback" not in stderr
    assert answered == []  # it never bound the port, so it never answered a 500


def test_serve_refuses_a_schema_behind_the_head(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'sealbox.db'}")
    try:
        migrate.upgrade(engine, "0001")
    finally:
        engine.dispose()
    code, stderr, answered = _serve_until_exit(data)
    assert code == 3, stderr
    assert f"revision 0001, behind this server's {migrate.head_revision()}" in stderr
    assert "sealbox-server migrate" in stderr
    assert answered == []


def test_serve_refuses_a_schema_from_a_newer_release_even_with_migrate_on_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'sealbox.db'}")
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        engine.dispose()
    code, stderr, answered = _serve_until_exit(data, {"SEALBOX_MIGRATE_ON_START": "1"})
    assert code == 3, stderr
    assert "9999_future, which this server does not know" in stderr
    assert answered == []


def test_migrate_on_start_migrates_then_serves(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path / "data", tmp_path / "server.log", env={"SEALBOX_MIGRATE_ON_START": "1"}
    )
    try:
        server.start()  # waits for /readyz 200
        assert httpx2.get(server.base_url + "/v1/server", timeout=10).status_code == 200
    finally:
        server.stop()
    assert "migrating the database first" in server.log_path.read_text()
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'sealbox.db'}")
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_nodes_migrating_on_start_against_one_postgresql_both_serve(tmp_path: Path) -> None:
    url = os.environ.get("SEALBOX_TEST_DATABASE_URL")
    if not url:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: PostgreSQL start-up test skipped")
    schema = "sbx_start_" + secrets.token_hex(6)
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    env = {
        "SEALBOX_DATABASE_URL": f"{url}{sep}options=-csearch_path%3D{schema}",
        "SEALBOX_MIGRATE_ON_START": "1",
        "SEALBOX_WORKERS": "1",
    }
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for i in range(2):  # both start before either is ready: their migrations race
            port = free_port()
            node_env = {**os.environ, "SEALBOX_DATA_DIR": str(tmp_path / f"node{i}"), **env}
            log = (tmp_path / f"node{i}.log").open("ab")
            procs.append(
                (
                    f"http://127.0.0.1:{port}",
                    subprocess.Popen(
                        [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(port)],
                        env=node_env,
                        stdout=log,
                        stderr=log,
                        cwd=ROOT,
                        start_new_session=True,
                    ),
                )
            )
            log.close()
        for base, proc in procs:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, (tmp_path / "node0.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "node did not become ready"
                try:
                    if httpx2.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                time.sleep(0.05)
            assert httpx2.get(base + "/v1/server", timeout=10).status_code == 200
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
