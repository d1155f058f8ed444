"""Attachments, client side and wire: the sealed-transfer entry, upload plans, wire models.

Theory of operation (docs/PROTOCOL.md §13):
* Attaching a file seals it once (`crypto.stream.seal_chunks`) with a fresh key and a
  fresh 16-byte attachment id; the result is a `SealedTransfer` (key + manifest: chunk
  size, chunk count, total sealed size, SHA-256 over the chunk ciphertexts).  It travels
  only inside the encrypted, signed report content (§13.3), next to the name, media type,
  plaintext size and plaintext SHA-256 of the file (`sync.report.AttachmentManifest`).
* The upload id on the server IS the attachment id: the server learns nothing from it
  (it is random) and a coordinator finds the chunks from the report content alone.
* Chunk ``i`` of the sealed stream starts at byte ``i * (chunk_size + 16)`` and all but
  the last are ``chunk_size + 16`` bytes, so a client can read any chunk of a local sealed
  copy directly and resume an upload at any set of missing chunks.
* `UploadPlan` is the resume state machine: given the server's status (which chunks it
  holds) it says which chunks remain, and refuses a status that disagrees with the
  manifest (a server that lies about an upload is reported, not trusted).
* Nothing here does I/O: the CLI reads files and talks HTTP; the server stores blobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crypto.stream import KEY_LENGTH, MAX_CHUNK_SIZE, TAG_LENGTH, Manifest
from sync.messages import B64

__all__ = [
    "ATTACHMENT_ID_LENGTH",
    "AttachmentError",
    "AttachmentReason",
    "ChunkStored",
    "CompleteUploadRequest",
    "CreateUploadRequest",
    "SealedTransfer",
    "UploadList",
    "UploadPlan",
    "UploadState",
    "UploadStatus",
    "chunk_length",
    "chunk_offset",
    "check_geometry",
]

ATTACHMENT_ID_LENGTH = 16


class AttachmentError(ValueError):
    """A sealed-transfer entry or a server's upload status is malformed or inconsistent."""


class AttachmentReason(StrEnum):
    """The ``reason`` extension of attachment problems (docs/PROTOCOL.md §13.5)."""

    UNKNOWN_UPLOAD = "unknown_upload"
    UPLOAD_CONFLICT = "upload_conflict"
    BAD_GEOMETRY = "bad_geometry"
    CHUNK_INDEX = "chunk_index"
    CHUNK_SIZE = "chunk_size"
    CHUNK_HASH = "chunk_hash"
    CHUNK_CONFLICT = "chunk_conflict"
    UPLOAD_INCOMPLETE = "upload_incomplete"
    MANIFEST_MISMATCH = "manifest_mismatch"
    ATTACHMENT_PENDING = "attachment_pending"
    TOO_LARGE = "too_large"
    DEVICE_QUOTA = "device_quota"
    ORG_QUOTA = "org_quota"


def chunk_offset(index: int, chunk_size: int) -> int:
    """Byte offset of sealed chunk ``index`` in the concatenated chunk ciphertexts."""
    return index * (chunk_size + TAG_LENGTH)


def chunk_length(index: int, *, chunk_size: int, chunk_count: int, total_size: int) -> int:
    """The exact length of sealed chunk ``index`` of an upload with this geometry."""
    if not 0 <= index < chunk_count:
        raise AttachmentError("chunk index out of range")
    if index < chunk_count - 1:
        return chunk_size + TAG_LENGTH
    return total_size - chunk_offset(chunk_count - 1, chunk_size)


def check_geometry(*, chunk_size: int, chunk_count: int, total_size: int) -> None:
    """Raise `AttachmentError` unless the numbers describe a sealed STREAM (§13.1).

    Every chunk but the last is ``chunk_size + 16`` bytes, the last 17 to ``chunk_size + 16``,
    and the padded plaintext ``total_size - 16 * chunk_count`` is a Padmé bucket.
    """
    from crypto.padding import padded_length

    ints = all(type(v) is int for v in (chunk_size, chunk_count, total_size))
    if not ints or not 1 <= chunk_size <= MAX_CHUNK_SIZE or chunk_count < 1:
        raise AttachmentError("chunk size or count out of range")
    full = chunk_size + TAG_LENGTH
    if not (chunk_count - 1) * full + TAG_LENGTH < total_size <= chunk_count * full:
        raise AttachmentError("total size does not match the chunk count")
    padded = total_size - TAG_LENGTH * chunk_count
    if padded_length(padded - 1) != padded:
        raise AttachmentError("the sealed size is not a padding bucket")


@dataclass(frozen=True, slots=True)
class SealedTransfer:
    """How to fetch and open one attachment: its key and manifest (inside the report only)."""

    key: bytes
    manifest: Manifest

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_LENGTH:
            raise AttachmentError("an attachment key is 32 bytes")
        m = self.manifest
        if not isinstance(m.sha256, bytes) or len(m.sha256) != 32:
            raise AttachmentError("the ciphertext hash is 32 bytes")
        check_geometry(chunk_size=m.chunk_size, chunk_count=m.chunk_count, total_size=m.total_size)

    def to_cbor(self) -> dict[str, Any]:
        m = self.manifest
        return {"k": self.key, "z": m.chunk_size, "c": m.chunk_count, "t": m.total_size,
                "h": m.sha256}  # fmt: skip

    @classmethod
    def from_cbor(cls, raw: Any) -> SealedTransfer:
        if not isinstance(raw, dict) or set(raw) != {"k", "z", "c", "t", "h"}:
            raise AttachmentError("malformed sealed-transfer entry")
        if not isinstance(raw["k"], bytes) or not isinstance(raw["h"], bytes):
            raise AttachmentError("malformed sealed-transfer entry")
        return cls(raw["k"], Manifest(raw["z"], raw["c"], raw["t"], raw["h"]))

    def chunk_length(self, index: int) -> int:
        m = self.manifest
        return chunk_length(
            index, chunk_size=m.chunk_size, chunk_count=m.chunk_count, total_size=m.total_size
        )


# --- wire models (JSON, base64url bytes) --------------------------------------------------------

_FROZEN = ConfigDict(extra="forbid", frozen=True)
UploadState = Literal["pending", "complete"]


class CreateUploadRequest(BaseModel):
    """POST /v1/orgs/{org}/attachments: declare an upload (idempotent for its creator)."""

    model_config = _FROZEN
    upload_id: B64 = Field(description="16 random bytes: the attachment id")
    chunk_size: int = Field(ge=1, le=MAX_CHUNK_SIZE, description="plaintext bytes per chunk")
    chunk_count: int = Field(ge=1, le=2**32)
    total_size: int = Field(ge=17, le=2**62, description="sum of the sealed chunk lengths")


class CompleteUploadRequest(BaseModel):
    """POST .../attachments/{upload}/complete: the manifest the uploader declares."""

    model_config = _FROZEN
    chunk_count: int = Field(ge=1, le=2**32)
    total_size: int = Field(ge=17, le=2**62)
    sha256: B64 = Field(description="SHA-256 over the concatenated chunk ciphertexts")


class UploadStatus(BaseModel):
    """What the server holds of an upload."""

    model_config = _FROZEN
    upload_id: B64
    state: UploadState
    chunk_size: int
    chunk_count: int
    total_size: int
    received: list[int] = Field(description="indices of the chunks the server stores")
    received_bytes: int
    sha256: B64 | None = None
    expires_at: int | None = Field(
        default=None, description="pending uploads: when they expire without activity"
    )


class UploadList(BaseModel):
    """A page of uploads by id; ask again with ``after`` = the last id while ``more``."""

    model_config = _FROZEN
    uploads: list[UploadStatus]
    more: bool = False


class ChunkStored(BaseModel):
    model_config = _FROZEN
    index: int
    status: Literal["created", "duplicate"]


# --- resume state -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """Which chunks of one attachment still have to go to the server."""

    upload_id: bytes
    transfer: SealedTransfer

    def __post_init__(self) -> None:
        if len(self.upload_id) != ATTACHMENT_ID_LENGTH:
            raise AttachmentError("an attachment id is 16 bytes")

    def create_request(self) -> CreateUploadRequest:
        m = self.transfer.manifest
        return CreateUploadRequest(
            upload_id=self.upload_id,
            chunk_size=m.chunk_size,
            chunk_count=m.chunk_count,
            total_size=m.total_size,
        )

    def complete_request(self) -> CompleteUploadRequest:
        m = self.transfer.manifest
        return CompleteUploadRequest(
            chunk_count=m.chunk_count, total_size=m.total_size, sha256=m.sha256
        )

    def check_status(self, status: UploadStatus) -> None:
        """Raise `AttachmentError` if the server's status is not about this upload."""
        m = self.transfer.manifest
        same = (
            status.upload_id == self.upload_id
            and status.chunk_size == m.chunk_size
            and status.chunk_count == m.chunk_count
            and status.total_size == m.total_size
        )
        if not same or any(not 0 <= i < m.chunk_count for i in status.received):
            raise AttachmentError("the server's upload status does not match the manifest")
        if status.state == "complete" and status.sha256 != m.sha256:
            raise AttachmentError("the server completed this upload with another hash")

    def remaining(self, received: Iterable[int]) -> list[int]:
        """The chunk indices not yet on the server, in order."""
        have = set(received)
        return [i for i in range(self.transfer.manifest.chunk_count) if i not in have]

    def remaining_bytes(self, received: Iterable[int]) -> int:
        return sum(self.transfer.chunk_length(i) for i in self.remaining(received))
