"""Attachment uploads: create, put chunk, status, complete, download, expire (PROTOCOL §13.4-§13.5).

Theory of operation:
* An upload is declared first (its geometry: chunk size, count, sealed size), which
  reserves its size against the device's and the organisation's attachment quotas.
* Chunks are put by index in any order.  The server checks the index, the exact length
  the geometry implies, and the SHA-256 the client declares; it writes the blob (atomic,
  content-addressed) and then records the chunk row.  A second put of a recorded chunk
  writes nothing ("duplicate"); a put with other bytes for a recorded index is refused.
* Complete re-reads every stored chunk in order, hashing it (so a damaged blob is found
  and dropped, to be uploaded again) and their concatenation; the upload becomes
  "complete" only if the declared count, total size and SHA-256 all match.
* Until then a coordinator sees it as "pending" (status and list); chunks are served to
  coordinators only once the upload is complete.
* Pending uploads without activity for ``SEALBOX_UPLOAD_EXPIRY_DAYS`` (default 30: field
  devices go dark for weeks) are deleted with their blobs by `expire_uploads`, which runs
  at most hourly on upload creation; it also removes blobs whose rows are gone.
* Crash safety: the blob is written before its row, so a crash leaves at most an orphan
  blob (swept later), never a row without bytes.

Refusals are `ApiError`s (problem+json, never 500) with a ``reason`` from
`sync.attachments.AttachmentReason`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.blobstore import (
    BlobKey,
    BlobNotFound,
    BlobStore,
    FilesystemBlobStore,
    S3BlobStore,
)
from server.db import read_tx, write_tx
from server.errors import ApiError
from server.tables_attachments import AttachmentChunk, AttachmentUpload
from sync.attachments import (
    AttachmentError,
    AttachmentReason,
    UploadStatus,
    check_geometry,
    chunk_length,
)
from sync.errors import ErrorCode

__all__ = [
    "AttachmentService",
    "AttachmentSettings",
    "complete_upload",
    "create_upload",
    "expire_uploads",
    "list_uploads",
    "open_chunk",
    "put_chunk",
    "upload_status",
]

_uploads = AttachmentUpload.__table__  # type: ignore[attr-defined]
_chunks = AttachmentChunk.__table__  # type: ignore[attr-defined]
DAY = 86_400
HOUR = 3600


class AttachmentSettings(BaseSettings):
    """The attachment knobs, read once from ``SEALBOX_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="SEALBOX_", frozen=True, extra="ignore")

    upload_expiry_days: int = Field(default=30, ge=1)
    max_attachment_bytes: int = Field(default=8 * 1024**3, ge=1024)
    max_chunk_bytes: int = Field(default=16 * 1024 * 1024 + 16, ge=1024)
    attachment_device_quota_bytes: int = Field(default=20 * 1024**3, ge=1024)
    attachment_org_quota_bytes: int = Field(default=200 * 1024**3, ge=1024)
    blob_backend: Literal["filesystem", "s3"] = "filesystem"
    s3_bucket: str | None = None
    s3_prefix: str = "sealbox/"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None


@dataclass
class AttachmentService:
    """What the attachment routes need: settings, the blob store, the sweep clock."""

    settings: AttachmentSettings
    store: BlobStore
    sweep_interval: int = 3600
    _last_sweep: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: AttachmentSettings, data_dir: Path) -> AttachmentService:
        store: BlobStore
        if settings.blob_backend == "s3":
            if not settings.s3_bucket:
                raise RuntimeError("SEALBOX_BLOB_BACKEND=s3 needs SEALBOX_S3_BUCKET")
            # Credentials come from boto3's usual chain (environment, files, instance role).
            store = S3BlobStore.connect(
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
            )
        else:
            store = FilesystemBlobStore(data_dir / "blobs")
        return cls(settings, store)

    def maybe_sweep(self, engine: Engine, now: int) -> None:
        with self._lock:
            if now - self._last_sweep < self.sweep_interval:
                return
            self._last_sweep = now
        expire_uploads(
            engine=engine, store=self.store, now=now, expiry_days=self.settings.upload_expiry_days
        )


def _problem(status: int, reason: AttachmentReason, detail: str, **extra: Any) -> ApiError:
    code = {
        404: ErrorCode.NOT_FOUND,
        413: ErrorCode.PAYLOAD_TOO_LARGE,
        429: ErrorCode.QUOTA_EXCEEDED,
    }.get(status, ErrorCode.VALIDATION_FAILED)
    return ApiError(code, status, detail, reason=reason.value, **extra)


def _unknown() -> ApiError:
    return _problem(404, AttachmentReason.UNKNOWN_UPLOAD, "no such upload")


def _row(conn: Any, org_id: bytes, upload_id: bytes) -> Any:
    return conn.execute(
        select(_uploads).where(_uploads.c.org_id == org_id, _uploads.c.upload_id == upload_id)
    ).first()


def _chunk_rows(conn: Any, org_id: bytes, upload_id: bytes) -> list[Any]:
    return list(
        conn.execute(
            select(_chunks.c.index, _chunks.c.size, _chunks.c.sha256)
            .where(_chunks.c.org_id == org_id, _chunks.c.upload_id == upload_id)
            .order_by(_chunks.c.index)
        )
    )


def _status(row: Any, chunks: list[Any], expiry_days: int) -> UploadStatus:
    return UploadStatus(
        upload_id=row.upload_id,
        state=row.state,
        chunk_size=row.chunk_size,
        chunk_count=row.chunk_count,
        total_size=row.total_size,
        received=[c.index for c in chunks],
        received_bytes=sum(c.size for c in chunks),
        sha256=row.sha256,
        expires_at=row.last_activity + expiry_days * DAY if row.state == "pending" else None,
    )


def _visible(row: Any, device_id: bytes, is_coordinator: bool) -> bool:
    return row is not None and (row.device_id == device_id or is_coordinator)


def create_upload(
    *,
    engine: Engine,
    service: AttachmentService,
    org_id: bytes,
    device_id: bytes,
    upload_id: bytes,
    chunk_size: int,
    chunk_count: int,
    total_size: int,
    now: int,
) -> tuple[UploadStatus, bool]:
    """Declare an upload; (status, created). Idempotent for the same device and geometry."""
    settings = service.settings
    if len(upload_id) != 16:
        raise _problem(422, AttachmentReason.BAD_GEOMETRY, "an upload id is 16 bytes")
    try:
        check_geometry(chunk_size=chunk_size, chunk_count=chunk_count, total_size=total_size)
    except AttachmentError as exc:
        raise _problem(422, AttachmentReason.BAD_GEOMETRY, str(exc)) from None
    limits = {
        "max_attachment_bytes": settings.max_attachment_bytes,
        "max_chunk_bytes": settings.max_chunk_bytes,
    }
    if total_size > settings.max_attachment_bytes or chunk_size + 16 > settings.max_chunk_bytes:
        raise _problem(413, AttachmentReason.TOO_LARGE, "the attachment is too large", **limits)
    service.maybe_sweep(engine, now)
    geometry = (chunk_size, chunk_count, total_size)
    try:
        return _create(engine, settings, org_id, device_id, upload_id, geometry, now)
    except IntegrityError:
        # The same upload declared twice at once: the second sees the first's row.
        return _create(engine, settings, org_id, device_id, upload_id, geometry, now)


def _create(
    engine: Engine,
    settings: AttachmentSettings,
    org_id: bytes,
    device_id: bytes,
    upload_id: bytes,
    geometry: tuple[int, int, int],
    now: int,
) -> tuple[UploadStatus, bool]:
    chunk_size, chunk_count, total_size = geometry
    with write_tx(engine) as conn:
        existing = _row(conn, org_id, upload_id)
        if existing is not None:
            same = (existing.chunk_size, existing.chunk_count, existing.total_size) == geometry
            if existing.device_id != device_id:
                raise _problem(409, AttachmentReason.UPLOAD_CONFLICT, "the upload id is taken")
            if not same:
                raise _problem(
                    409, AttachmentReason.UPLOAD_CONFLICT, "the upload exists with other sizes"
                )
            chunks = _chunk_rows(conn, org_id, upload_id)
            return _status(existing, chunks, settings.upload_expiry_days), False
        device_used, org_used = conn.execute(
            select(
                func.coalesce(
                    func.sum(_uploads.c.total_size).filter(_uploads.c.device_id == device_id), 0
                ),
                func.coalesce(func.sum(_uploads.c.total_size), 0),
            ).where(_uploads.c.org_id == org_id)
        ).one()
        if device_used + total_size > settings.attachment_device_quota_bytes:
            raise _problem(
                429,
                AttachmentReason.DEVICE_QUOTA,
                "the device's attachment quota is used up",
                headers={"Retry-After": "3600"},
                retry_after=3600,
            )
        if org_used + total_size > settings.attachment_org_quota_bytes:
            raise _problem(
                429,
                AttachmentReason.ORG_QUOTA,
                "the organisation's attachment quota is used up",
                headers={"Retry-After": "3600"},
                retry_after=3600,
            )
        values = {
            "org_id": org_id,
            "upload_id": upload_id,
            "device_id": device_id,
            "chunk_size": chunk_size,
            "chunk_count": chunk_count,
            "total_size": total_size,
            "state": "pending",
            "sha256": None,
            "created_at": now - now % DAY,  # whole days: when, not exactly when
            "last_activity": now - now % HOUR,  # expiry needs no finer time
        }
        conn.execute(insert(_uploads).values(**values))
        created = _row(conn, org_id, upload_id)
    return _status(created, [], settings.upload_expiry_days), True


def put_chunk(
    *,
    engine: Engine,
    service: AttachmentService,
    org_id: bytes,
    device_id: bytes,
    upload_id: bytes,
    index: int,
    sha256: bytes,
    data: bytes,
    now: int,
) -> bool:
    """Store chunk ``index``; True if stored now, False if it was already stored."""
    with read_tx(engine) as conn:
        row = _row(conn, org_id, upload_id)
        if row is None or row.device_id != device_id:
            raise _unknown()
        recorded = conn.execute(
            select(_chunks.c.sha256).where(
                _chunks.c.org_id == org_id,
                _chunks.c.upload_id == upload_id,
                _chunks.c.index == index,
            )
        ).first()
    try:
        expected = chunk_length(
            index,
            chunk_size=row.chunk_size,
            chunk_count=row.chunk_count,
            total_size=row.total_size,
        )
    except AttachmentError:
        raise _problem(
            422,
            AttachmentReason.CHUNK_INDEX,
            "chunk index out of range",
            chunk_count=row.chunk_count,
        ) from None
    if len(data) != expected:
        raise _problem(
            422, AttachmentReason.CHUNK_SIZE, "the chunk is not the size the upload implies",
            expected_size=expected,
        )  # fmt: skip
    if len(sha256) != 32 or hashlib.sha256(data).digest() != sha256:
        raise _problem(422, AttachmentReason.CHUNK_HASH, "the chunk does not match its SHA-256")
    if recorded is not None:
        if recorded.sha256 == sha256:
            return False
        raise _problem(
            409, AttachmentReason.CHUNK_CONFLICT, "this chunk is stored with other bytes"
        )
    key = BlobKey(org_id, upload_id, index, sha256)
    service.store.put(key, data)
    try:
        with write_tx(engine) as conn:
            if _row(conn, org_id, upload_id) is None:  # expired meanwhile
                raise _unknown()
            conn.execute(
                insert(_chunks).values(
                    org_id=org_id, upload_id=upload_id, index=index, size=len(data), sha256=sha256
                )
            )
            conn.execute(
                update(_uploads)
                .where(_uploads.c.org_id == org_id, _uploads.c.upload_id == upload_id)
                .values(last_activity=now - now % HOUR)
            )
    except IntegrityError:
        # A concurrent put of the same index won; ours is the same chunk or an orphan.
        with read_tx(engine) as conn:
            winner = conn.execute(
                select(_chunks.c.sha256).where(
                    _chunks.c.org_id == org_id,
                    _chunks.c.upload_id == upload_id,
                    _chunks.c.index == index,
                )
            ).first()
        if winner is not None and winner.sha256 == sha256:
            return False
        service.store.delete(key)
        raise _problem(
            409, AttachmentReason.CHUNK_CONFLICT, "this chunk is stored with other bytes"
        ) from None
    except ApiError:
        service.store.delete(key)
        raise
    return True


def upload_status(
    *,
    engine: Engine,
    service: AttachmentService,
    org_id: bytes,
    upload_id: bytes,
    device_id: bytes,
    is_coordinator: bool,
) -> UploadStatus:
    with read_tx(engine) as conn:
        row = _row(conn, org_id, upload_id)
        if not _visible(row, device_id, is_coordinator):
            raise _unknown()
        return _status(
            row, _chunk_rows(conn, org_id, upload_id), service.settings.upload_expiry_days
        )


def list_uploads(
    *,
    engine: Engine,
    service: AttachmentService,
    org_id: bytes,
    state: Literal["pending", "complete"] | None,
    after: bytes,
    limit: int,
) -> tuple[list[UploadStatus], bool]:
    """A page of the organisation's uploads by id after ``after`` (coordinators); (page, more).

    Statuses in a list carry no chunk indices, only ``received_bytes``."""
    query = select(_uploads).where(_uploads.c.org_id == org_id, _uploads.c.upload_id > after)
    if state is not None:
        query = query.where(_uploads.c.state == state)
    with read_tx(engine) as conn:
        rows = list(conn.execute(query.order_by(_uploads.c.upload_id).limit(limit + 1)))
        page = rows[:limit]
        sizes: dict[bytes, int] = {}
        if page:
            sizes = dict(
                conn.execute(
                    select(_chunks.c.upload_id, func.sum(_chunks.c.size))
                    .where(
                        _chunks.c.org_id == org_id,
                        _chunks.c.upload_id.in_([r.upload_id for r in page]),
                    )
                    .group_by(_chunks.c.upload_id)
                ).all()
            )
    out = []
    for row in page:
        status = _status(row, [], service.settings.upload_expiry_days)
        received = int(sizes.get(row.upload_id, 0))  # PostgreSQL sums are Decimal
        out.append(status.model_copy(update={"received_bytes": received}))
    return out, len(rows) > limit


def complete_upload(
    *,
    engine: Engine,
    service: AttachmentService,
    org_id: bytes,
    device_id: bytes,
    upload_id: bytes,
    chunk_count: int,
    total_size: int,
    sha256: bytes,
    now: int,
) -> UploadStatus:
    """Check the whole upload against the declared manifest and mark it complete."""
    expiry = service.settings.upload_expiry_days
    with read_tx(engine) as conn:
        row = _row(conn, org_id, upload_id)
        if row is None or row.device_id != device_id:
            raise _unknown()
        chunks = _chunk_rows(conn, org_id, upload_id)
    if (chunk_count, total_size) != (row.chunk_count, row.total_size):
        raise _problem(
            422, AttachmentReason.MANIFEST_MISMATCH, "count or size differ from the upload"
        )
    if row.state == "complete":
        if row.sha256 != sha256:
            raise _problem(422, AttachmentReason.MANIFEST_MISMATCH, "the hash does not match")
        return _status(row, chunks, expiry)
    have = {c.index for c in chunks}
    missing = [i for i in range(row.chunk_count) if i not in have]
    if missing:
        raise _problem(
            409, AttachmentReason.UPLOAD_INCOMPLETE, "chunks are missing", missing=missing[:1000]
        )
    whole = hashlib.sha256()
    damaged = []
    for chunk in chunks:
        key = BlobKey(org_id, upload_id, chunk.index, chunk.sha256)
        one = hashlib.sha256()
        try:
            for piece in service.store.get(key):
                one.update(piece)
                whole.update(piece)
        except BlobNotFound:
            damaged.append(chunk.index)
            continue
        if one.digest() != chunk.sha256:
            damaged.append(chunk.index)
    if damaged:
        # The store lost or damaged these: forget them so the uploader sends them again.
        with write_tx(engine) as conn:
            conn.execute(
                delete(_chunks).where(
                    _chunks.c.org_id == org_id,
                    _chunks.c.upload_id == upload_id,
                    _chunks.c.index.in_(damaged),
                )
            )
        for chunk in chunks:
            if chunk.index in damaged:
                service.store.delete(BlobKey(org_id, upload_id, chunk.index, chunk.sha256))
        raise _problem(
            409, AttachmentReason.UPLOAD_INCOMPLETE, "stored chunks were damaged", missing=damaged
        )
    if whole.digest() != sha256:
        raise _problem(422, AttachmentReason.MANIFEST_MISMATCH, "the hash does not match")
    with write_tx(engine) as conn:
        conn.execute(
            update(_uploads)
            .where(_uploads.c.org_id == org_id, _uploads.c.upload_id == upload_id)
            .values(state="complete", sha256=sha256, last_activity=now - now % HOUR)
        )
        return _status(_row(conn, org_id, upload_id), chunks, expiry)


def open_chunk(
    *, engine: Engine, service: AttachmentService, org_id: bytes, upload_id: bytes, index: int
) -> tuple[int, Iterator[bytes]]:
    """(length, bytes) of chunk ``index`` of a complete upload (coordinators)."""
    with read_tx(engine) as conn:
        row = _row(conn, org_id, upload_id)
        if row is None:
            raise _unknown()
        if row.state != "complete":
            raise _problem(
                409, AttachmentReason.ATTACHMENT_PENDING, "the attachment is still uploading"
            )
        chunk = conn.execute(
            select(_chunks.c.size, _chunks.c.sha256).where(
                _chunks.c.org_id == org_id,
                _chunks.c.upload_id == upload_id,
                _chunks.c.index == index,
            )
        ).first()
    if chunk is None:
        raise _problem(404, AttachmentReason.CHUNK_INDEX, "no such chunk")
    try:
        return chunk.size, service.store.get(BlobKey(org_id, upload_id, index, chunk.sha256))
    except BlobNotFound:
        raise _problem(
            404, AttachmentReason.CHUNK_INDEX, "the chunk is missing from the store"
        ) from None


def expire_uploads(*, engine: Engine, store: BlobStore, now: int, expiry_days: int) -> int:
    """Delete pending uploads idle for ``expiry_days`` and orphan blobs; the number expired."""
    cutoff = now - expiry_days * DAY
    with write_tx(engine) as conn:
        stale = [
            (r.org_id, r.upload_id)
            for r in conn.execute(
                select(_uploads.c.org_id, _uploads.c.upload_id).where(
                    _uploads.c.state == "pending", _uploads.c.last_activity < cutoff
                )
            )
        ]
        for org_id, upload_id in stale:
            conn.execute(
                delete(_chunks).where(_chunks.c.org_id == org_id, _chunks.c.upload_id == upload_id)
            )
            conn.execute(
                delete(_uploads).where(
                    _uploads.c.org_id == org_id, _uploads.c.upload_id == upload_id
                )
            )
    for org_id, upload_id in stale:
        store.delete_upload(org_id, upload_id)
    # Blobs whose upload row is gone (a crash between the row delete and the blob delete).
    for org_id, upload_id in list(store.uploads()):
        with read_tx(engine) as conn:
            if _row(conn, org_id, upload_id) is None:
                store.delete_upload(org_id, upload_id)
    return len(stale)
