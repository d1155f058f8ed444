"""Attachment test fixtures: blob stores on both backends (filesystem, S3 via moto's server).

The S3 store talks HTTP to moto's server mode on 127.0.0.1 on a free port (one server per
test session, one fresh bucket per test), so the boto3 code path is the one an operator runs.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.blobstore import BlobStore, FilesystemBlobStore, S3BlobStore

S3_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def s3_all_bytes(store: S3BlobStore) -> list[tuple[str, bytes]]:
    """Every object the server wrote to the bucket, with its bytes (for canary scans)."""
    out = []
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket):
        for item in page.get("Contents", []):
            body = store.client.get_object(Bucket=store.bucket, Key=item["Key"])["Body"]
            out.append((item["Key"], body.read()))
    return out


@pytest.fixture(params=["filesystem", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store: BlobStore
    if request.param == "filesystem":
        store = FilesystemBlobStore(tmp_path / "blobs")
    else:
        store = request.getfixturevalue("s3_store")
    return store
