"""One conformance suite for every BlobStore backend (filesystem and S3 through moto's server).

PROTOCOL §13.4: a chunk is stored under its org, upload, index and SHA-256; a put whose bytes
do not match the hash writes nothing; a put is idempotent; reads stream; deletion and listing
serve the expiry sweep.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path

import pytest

from server.blobstore import (
    READ_SIZE,
    BlobIntegrityError,
    BlobKey,
    BlobNotFound,
    BlobStore,
    FilesystemBlobStore,
)


def key_for(data: bytes, index: int = 0, org: bytes | None = None, up: bytes | None = None):
    return BlobKey(
        org or secrets.token_bytes(16),
        up or secrets.token_bytes(16),
        index,
        hashlib.sha256(data).digest(),
    )


def test_put_get_round_trip_streams_in_bounded_pieces(blob_store: BlobStore) -> None:
    data = os.urandom(3 * READ_SIZE + 17)
    key = key_for(data)
    assert not blob_store.has(key)
    assert blob_store.put(key, data) is True
    assert blob_store.has(key)
    pieces = list(blob_store.get(key))
    assert b"".join(pieces) == data
    assert all(len(p) <= READ_SIZE for p in pieces)


def test_put_is_idempotent_and_stores_once(blob_store: BlobStore) -> None:
    data = os.urandom(1000)
    key = key_for(data)
    assert blob_store.put(key, data) is True
    assert blob_store.put(key, data) is False
    assert b"".join(blob_store.get(key)) == data


def test_put_with_wrong_hash_writes_nothing(blob_store: BlobStore) -> None:
    data = os.urandom(100)
    key = key_for(data)
    with pytest.raises(BlobIntegrityError):
        blob_store.put(key, data[:-1] + bytes([data[-1] ^ 1]))
    assert not blob_store.has(key)
    assert list(blob_store.uploads()) == []


def test_same_index_with_other_bytes_is_another_blob(blob_store: BlobStore) -> None:
    """The hash is in the address: a second content never overwrites the first."""
    org, up = secrets.token_bytes(16), secrets.token_bytes(16)
    a, b = b"first content", b"other content"
    ka, kb = key_for(a, 3, org, up), key_for(b, 3, org, up)
    assert blob_store.put(ka, a) and blob_store.put(kb, b)
    assert b"".join(blob_store.get(ka)) == a
    assert b"".join(blob_store.get(kb)) == b


def test_get_missing_raises_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        list(blob_store.get(key_for(b"never stored")))


def test_empty_blob(blob_store: BlobStore) -> None:
    key = key_for(b"")
    assert blob_store.put(key, b"")
    assert b"".join(blob_store.get(key)) == b""


def test_delete_and_delete_upload_and_listing(blob_store: BlobStore) -> None:
    org, up1, up2 = (secrets.token_bytes(16) for _ in range(3))
    chunks = [os.urandom(50) for _ in range(5)]
    keys1 = [key_for(c, i, org, up1) for i, c in enumerate(chunks)]
    for k, c in zip(keys1, chunks, strict=True):
        blob_store.put(k, c)
    k2 = key_for(b"x", 0, org, up2)
    blob_store.put(k2, b"x")
    assert sorted(blob_store.uploads()) == sorted([(org, up1), (org, up2)])
    blob_store.delete(keys1[0])
    blob_store.delete(keys1[0])  # absent: no error
    assert not blob_store.has(keys1[0])
    assert blob_store.delete_upload(org, up1) == 4
    assert not any(blob_store.has(k) for k in keys1)
    assert blob_store.has(k2)
    assert list(blob_store.uploads()) == [(org, up2)]
    assert blob_store.delete_upload(org, up1) == 0


def test_concurrent_puts_of_one_chunk_store_it_once(blob_store: BlobStore) -> None:
    data = os.urandom(200_000)
    key = key_for(data)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        created = blob_store.put(key, data)
        with lock:
            results.append(created)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b"".join(blob_store.get(key)) == data
    if isinstance(blob_store, FilesystemBlobStore):
        assert results.count(True) == 1  # link() lets exactly one writer in


def test_filesystem_store_is_atomic_and_private(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    data = os.urandom(4096)
    key = key_for(data)
    store.put(key, data)
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [key.name]  # no temporary file left behind
    assert files[0].stat().st_mode & 0o077 == 0
    assert (tmp_path / "blobs").stat().st_mode & 0o077 == 0
    # A leftover temporary file from a crash is not a blob and is swept with its upload.
    (files[0].parent / ".tmp-deadbeef").write_bytes(b"partial")
    assert store.delete_upload(key.org_id, key.upload_id) == 1
    assert list(store.uploads()) == []


def test_blob_key_validation() -> None:
    with pytest.raises(ValueError):
        BlobKey(b"short", bytes(16), 0, bytes(32))
    with pytest.raises(ValueError):
        BlobKey(bytes(16), bytes(16), -1, bytes(32))
    with pytest.raises(ValueError):
        BlobKey(bytes(16), bytes(16), 0, bytes(31))
