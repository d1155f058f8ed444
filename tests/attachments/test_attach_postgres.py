"""The attachment service on PostgreSQL (a fresh schema per test; skipped without one).

Same rules as on SQLite (test_attach_api.py); what differs is the database: sums come back
as Decimal, the quota check and the paging run on another planner, and concurrent
declarations are not serialised by a file lock.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from attach_support import AttachEnv, attach_env, b64
from sqlalchemy import text
from test_attach_api import complete, create, download, put, sealed

from crypto.stream import open_chunks
from server.attachments import AttachmentSettings, expire_uploads
from server.blobstore import FilesystemBlobStore
from server.db import make_engine
from sync.roster import Role

PG_URL = os.environ.get("SEALBOX_TEST_DATABASE_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="SEALBOX_TEST_DATABASE_URL is not set"),
]
CS = 1024


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[AttachEnv]:
    assert PG_URL
    schema = "sbx_attach_" + secrets.token_hex(6)
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    settings = AttachmentSettings(attachment_device_quota_bytes=40 * CS)
    try:
        yield from attach_env(tmp_path, FilesystemBlobStore(tmp_path / "blobs"), settings, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_upload_list_quota_expiry_on_postgresql(pg_env: AttachEnv) -> None:
    env = pg_env
    field = env.org.add_device(Role.FIELD)
    data, key, aid, chunks, m = sealed(9 * CS)
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: create(env, field, aid, m).status_code, range(4)))
    assert codes == [200, 200, 200, 201]
    for i in reversed(range(m.chunk_count)):
        assert put(env, field, aid, i, chunks[i]).status_code == 201
    assert put(env, field, aid, 0, chunks[0]).status_code == 200
    listed = env.json("GET", "/attachments?limit=1", None, env.org.coordinator).json()
    assert listed["uploads"][0]["received_bytes"] == m.total_size  # a Decimal sum, as int
    assert complete(env, field, aid, m).status_code == 200
    assert b"".join(open_chunks(key, aid, download(env, aid, m.chunk_count), chunk_size=CS,
                                expected=m)) == data  # fmt: skip
    # The device quota (40 chunks) counts the declared sizes: a second 9-chunk upload fits,
    # a third and fourth do not.
    _, _, other, _, m2 = sealed(9 * CS)
    assert create(env, field, other, m2).status_code == 201
    _, _, big, _, m3 = sealed(20 * CS)
    r = create(env, field, big, m3)
    assert r.status_code == 429 and r.json()["reason"] == "device_quota"
    page = env.json("GET", "/attachments?limit=1", None, env.org.coordinator).json()
    assert page["more"] is True
    after = page["uploads"][0]["upload_id"]
    rest = env.json("GET", f"/attachments?after={after}", None, env.org.coordinator).json()
    assert rest["more"] is False
    assert {u["upload_id"] for u in page["uploads"] + rest["uploads"]} == {b64(aid), b64(other)}
    import time

    kw = {"engine": env.engine, "store": env.service.store, "expiry_days": 30}
    assert expire_uploads(now=int(time.time()) + 31 * 86400, **kw) == 1  # only the pending one
