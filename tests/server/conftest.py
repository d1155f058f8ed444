"""Server test fixtures: a migrated database per test (SQLite, or PostgreSQL in a fresh schema).

Every test here runs under ``no_leaked_processes`` (tests/conftest.py): a server or
CLI process it starts must be stopped by the time it ends.

Set ``SEALBOX_TEST_DATABASE_URL`` (CI: ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
to run the ``backend``-parametrised storage/API tests on PostgreSQL too; each run
creates a uniquely named schema, points ``search_path`` at it and drops it at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import METRICS_TOKEN
from server_api import ADMIN_TOKEN
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from server import migrate
from server.app import create_app
from server.db import make_engine
from server.settings import Settings

PG_URL = os.environ.get("SEALBOX_TEST_DATABASE_URL")


def _sqlite_engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'sealbox.db'}")


@pytest.fixture
def pg_schema_engine() -> Iterator[Engine]:
    if not PG_URL:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: PostgreSQL storage tests skipped")
    schema = "sbx_test_" + secrets.token_hex(6)
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database on each backend (PostgreSQL only when configured)."""
    if request.param == "sqlite":
        eng = _sqlite_engine(tmp_path)
    else:
        eng = request.getfixturevalue("pg_schema_engine")
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, admin_token=ADMIN_TOKEN, metrics_token=METRICS_TOKEN, verify_threads=2
    )


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _every_started_process_is_stopped(no_leaked_processes: None) -> None:
    """Applies ``no_leaked_processes`` to every server test."""
