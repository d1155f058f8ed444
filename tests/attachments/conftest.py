"""Attachment test fixtures: blob stores on both backends (filesystem, S3 via moto's server).

The S3 store talks HTTP to moto's server mode on 127.0.0.1 on a free port (one server per
test session, one fresh bucket per test), so the boto3 code path is the one an operator runs.
Helpers live in `attach_support`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from attach_support import S3_CREDENTIALS, AttachEnv, attach_env, free_port

from server.blobstore import BlobStore, FilesystemBlobStore, S3BlobStore


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_store(moto_endpoint: str) -> S3BlobStore:
    store = S3BlobStore.connect(
        bucket="sealbox-" + secrets.token_hex(6),
        prefix="blobs/",
        endpoint_url=moto_endpoint,
        **S3_CREDENTIALS,
    )
    store.client.create_bucket(Bucket=store.bucket)
    return store


@pytest.fixture(params=["filesystem", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store: BlobStore
    if request.param == "filesystem":
        store = FilesystemBlobStore(tmp_path / "blobs")
    else:
        store = request.getfixturevalue("s3_store")
    return store


@pytest.fixture
def env(tmp_path: Path, blob_store: BlobStore) -> Iterator[AttachEnv]:
    yield from attach_env(tmp_path, blob_store)
