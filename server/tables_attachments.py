"""Attachment upload tables (SQLModel ``table=True`` classes only; docs/PROTOCOL.md §13.4).

What the server learns about an attachment: which device uploads it, its chunk size,
chunk count and sealed size (all bucketed by the Padmé padding of §13.1), the SHA-256
of each sealed chunk and of their concatenation, and the day it was created.  It never
learns the name, media type, key or which report refers to it: those are inside the
encrypted report content.  The chunk bytes live in the `server.blobstore` store.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary
from sqlmodel import Field, SQLModel

import server.tables  # noqa: F401  (first: its naming convention applies to these tables too)

__all__ = ["AttachmentChunk", "AttachmentUpload"]


class AttachmentUpload(SQLModel, table=True):
    """One attachment upload; ``state`` is "pending" until a complete check passes."""

    __tablename__ = "attachment_uploads"
    __table_args__ = (
        Index("ix_attachment_uploads_org_id_device_id", "org_id", "device_id"),
        Index("ix_attachment_uploads_state_last_activity", "state", "last_activity"),
    )
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    upload_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    device_id: bytes = Field(sa_type=LargeBinary)
    chunk_size: int = Field(sa_type=BigInteger)
    chunk_count: int = Field(sa_type=BigInteger)
    total_size: int = Field(sa_type=BigInteger)
    state: str
    sha256: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: int = Field(sa_type=BigInteger)
    last_activity: int = Field(sa_type=BigInteger)


class AttachmentChunk(SQLModel, table=True):
    """One stored chunk: its index, size and SHA-256 (the blob's address)."""

    __tablename__ = "attachment_chunks"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    upload_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    index: int = Field(primary_key=True, sa_type=BigInteger)
    size: int = Field(sa_type=BigInteger)
    sha256: bytes = Field(sa_type=LargeBinary)
