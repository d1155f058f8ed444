"""Attachment chunk storage: the `BlobStore` protocol, a filesystem store and an S3 store.

Theory of operation (docs/PROTOCOL.md §13.4):
* A blob is one sealed attachment chunk, addressed by ``BlobKey``: organisation id,
  upload id, chunk index and the chunk's SHA-256.  Because the hash is part of the
  address, two different contents never share a name: a lost race or a retried upload
  with other bytes leaves an orphan, never a corrupted chunk.  The database (the
  ``attachment_chunks`` table) says which hash is the chunk; the store only keeps bytes.
* ``put`` checks the SHA-256 of the bytes against the key before anything is written
  and is idempotent: a second put of the same key writes nothing and returns False.
* ``get`` streams the chunk in pieces (never more than `READ_SIZE` bytes at a time).
* ``delete_upload`` removes every blob of an upload; ``uploads`` lists the uploads the
  store holds, so an expiry sweep can remove blobs whose database rows are gone.

The stores hold only ciphertext the clients sealed; nothing here sees a key.

Filesystem layout under ``<data dir>/blobs``::

    <org hex>/<upload hex>/<index, 8 digits>.<sha256 hex>

written atomically: a temporary file in the same directory, ``fsync``, ``link`` into
place (fails if the name exists: stored once), ``fsync`` of the directory.  Small blobs
do NOT live in the database: chunks are at most 16 MiB, usually 1 MiB, and the hot
database (envelopes, feed) stays small and quick to back up; the filesystem write is
one sequential file per chunk.

S3 layout: ``<prefix><org hex>/<upload hex>/<index>.<sha256 hex>``; each put sends
``ChecksumSHA256`` so the S3 service verifies the bytes too.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "READ_SIZE",
    "BlobIntegrityError",
    "BlobKey",
    "BlobNotFound",
    "BlobStore",
    "FilesystemBlobStore",
    "S3BlobStore",
]

READ_SIZE = 64 * 1024


class BlobIntegrityError(ValueError):
    """The bytes given to `BlobStore.put` do not hash to the key's SHA-256."""


class BlobNotFound(KeyError):
    """No blob under this key."""


@dataclass(frozen=True, slots=True)
class BlobKey:
    org_id: bytes
    upload_id: bytes
    index: int
    sha256: bytes

    def __post_init__(self) -> None:
        if len(self.org_id) != 16 or len(self.upload_id) != 16 or len(self.sha256) != 32:
            raise ValueError("malformed blob key")
        if type(self.index) is not int or not 0 <= self.index < 10**8:
            raise ValueError("chunk index out of range")

    @property
    def name(self) -> str:
        return f"{self.index:08d}.{self.sha256.hex()}"

    @property
    def prefix(self) -> str:
        return f"{self.org_id.hex()}/{self.upload_id.hex()}"


def _check(key: BlobKey, data: bytes) -> None:
    if hashlib.sha256(data).digest() != key.sha256:
        raise BlobIntegrityError("chunk bytes do not match their SHA-256")


def _parse_prefix(org_hex: str, upload_hex: str) -> tuple[bytes, bytes] | None:
    try:
        org, upload = bytes.fromhex(org_hex), bytes.fromhex(upload_hex)
    except ValueError:
        return None
    if len(org) != 16 or len(upload) != 16:
        return None
    return org, upload


@runtime_checkable
class BlobStore(Protocol):
    """Where sealed chunks live. Implementations are thread-safe."""

    def put(self, key: BlobKey, data: bytes) -> bool:
        """Store ``data`` under ``key`` atomically; False if it was already there.

        Raises:
            BlobIntegrityError: ``sha256(data) != key.sha256`` (nothing is written).
        """
        ...

    def has(self, key: BlobKey) -> bool: ...

    def get(self, key: BlobKey) -> Iterator[bytes]:
        """The blob's bytes in pieces of at most `READ_SIZE`.

        Raises:
            BlobNotFound: no such blob (raised before the first piece).
        """
        ...

    def delete(self, key: BlobKey) -> None:
        """Remove one blob (no error if it is absent)."""
        ...

    def delete_upload(self, org_id: bytes, upload_id: bytes) -> int:
        """Remove every blob of an upload; the number removed."""
        ...

    def uploads(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (org id, upload id) with at least one blob (for expiry sweeps)."""
        ...


class FilesystemBlobStore:
    """Blobs as files under ``root`` (the server's ``<data dir>/blobs``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _dir(self, org_id: bytes, upload_id: bytes) -> Path:
        return self.root / org_id.hex() / upload_id.hex()

    def _path(self, key: BlobKey) -> Path:
        return self._dir(key.org_id, key.upload_id) / key.name

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ensure_dir(self, key: BlobKey) -> Path:
        directory = self._dir(key.org_id, key.upload_id)
        if not directory.is_dir():
            org_dir = directory.parent
            if not org_dir.is_dir():
                org_dir.mkdir(mode=0o700, exist_ok=True)
                self._fsync_dir(self.root)
            directory.mkdir(mode=0o700, exist_ok=True)
            self._fsync_dir(org_dir)
        return directory

    def put(self, key: BlobKey, data: bytes) -> bool:
        _check(key, data)
        final = self._path(key)
        if final.exists():
            return False
        directory = self._ensure_dir(key)
        tmp = directory / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)  # atomic, and refuses to replace: the first writer wins
            created = True
        except FileExistsError:
            created = False
        finally:
            tmp.unlink()
        self._fsync_dir(directory)
        return created

    def has(self, key: BlobKey) -> bool:
        return self._path(key).is_file()

    def get(self, key: BlobKey) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key.name) from None
        return self._read(handle)

    @staticmethod
    def _read(handle: Any) -> Iterator[bytes]:
        with handle:
            while piece := handle.read(READ_SIZE):
                yield piece

    def delete(self, key: BlobKey) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return

    def delete_upload(self, org_id: bytes, upload_id: bytes) -> int:
        directory = self._dir(org_id, upload_id)
        if not directory.is_dir():
            return 0
        removed = 0
        for entry in directory.iterdir():
            entry.unlink(missing_ok=True)
            removed += not entry.name.startswith(".tmp-")
        try:
            directory.rmdir()
        except OSError:  # a concurrent put recreated a file; the next sweep finishes
            return removed
        self._fsync_dir(directory.parent)
        return removed

    def uploads(self) -> Iterator[tuple[bytes, bytes]]:
        for org_dir in sorted(self.root.iterdir()):
            if not org_dir.is_dir():
                continue
            for upload_dir in sorted(org_dir.iterdir()):
                parsed = _parse_prefix(org_dir.name, upload_dir.name)
                if parsed is not None and upload_dir.is_dir():
                    yield parsed


class S3BlobStore:
    """Blobs as objects in an S3-compatible bucket (boto3)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def connect(
        cls,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> S3BlobStore:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        return cls(client, bucket, prefix)

    def _key(self, key: BlobKey) -> str:
        return f"{self.prefix}{key.prefix}/{key.name}"

    def _is_missing(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}

    def put(self, key: BlobKey, data: bytes) -> bool:
        _check(key, data)
        if self.has(key):
            return False
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ChecksumSHA256=base64.b64encode(key.sha256).decode("ascii"),
        )
        return True

    def has(self, key: BlobKey) -> bool:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if self._is_missing(exc):
                return False
            raise
        return True

    def get(self, key: BlobKey) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if self._is_missing(exc):
                raise BlobNotFound(key.name) from None
            raise
        return self._stream(response["Body"])

    @staticmethod
    def _stream(body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(READ_SIZE)
        finally:
            body.close()

    def delete(self, key: BlobKey) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from paginator.paginate(**kwargs)

    def delete_upload(self, org_id: bytes, upload_id: bytes) -> int:
        prefix = f"{self.prefix}{org_id.hex()}/{upload_id.hex()}/"
        removed = 0
        for page in self._list(prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                batch = keys[start : start + 1000]
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                removed += len(batch)
        return removed

    def uploads(self) -> Iterator[tuple[bytes, bytes]]:
        for org_page in self._list(self.prefix, "/"):
            for org_prefix in org_page.get("CommonPrefixes", []):
                for page in self._list(org_prefix["Prefix"], "/"):
                    for upload_prefix in page.get("CommonPrefixes", []):
                        parts = upload_prefix["Prefix"][len(self.prefix) :].strip("/").split("/")
                        if len(parts) == 2:
                            parsed = _parse_prefix(parts[0], parts[1])
                            if parsed is not None:
                                yield parsed
