"""Attachments in a carried file (PROTOCOL §23.1, §23.4): grouped by the SHA-256 of their
sealed chunks, then judged against the manifest entries of the revisions the reader opened.

A carrier sees the chunks' ciphertext only, so it can drop, cut, reorder, repeat or alter
them and no more: an attachment is kept only when every chunk its manifest entry counts is
in the file and the whole opens under that entry's key, with its size and SHA-256 (§13.6.1),
exactly as a download from the server.  Nothing here does I/O; the chunks' bytes come from
the reader's buffer one at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from crypto import VerificationFailed
from crypto.stream import open_chunks
from sync.carry import CarriedChunk, CarriedFile, Status
from sync.report import AttachmentManifest

__all__ = ["AttachmentJudged", "CarriedAttachment", "attachments_of", "judge_attachments"]


@dataclass(frozen=True, slots=True)
class CarriedAttachment:
    """The chunk frames of one attachment, in chunk order (gaps and repeats are a problem)."""

    sealed_sha256: bytes
    chunks: tuple[CarriedChunk, ...]
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class AttachmentJudged:
    sealed_sha256: bytes
    status: Status
    reason: str = ""
    entry: AttachmentManifest | None = None  # the manifest entry that names it
    chunks: tuple[CarriedChunk, ...] = ()

    @property
    def usable(self) -> bool:
        return self.status is Status.ACCEPTED


def attachments_of(carried: CarriedFile) -> list[CarriedAttachment]:
    """The file's chunk frames grouped by attachment, in the order the file first names them."""
    groups: dict[bytes, dict[int, CarriedChunk]] = {}
    problems: dict[bytes, str] = {}
    for chunk in carried.chunks:
        group = groups.setdefault(chunk.sealed_sha256, {})
        earlier = group.get(chunk.chunk)
        if earlier is None:
            group[chunk.chunk] = chunk
        elif earlier.data != chunk.data:
            problems.setdefault(
                chunk.sealed_sha256,
                f"repeated: two different chunks {chunk.chunk} (frames {earlier.index},"
                f" {chunk.index}); altered",
            )
    out = []
    for sealed_sha256, group in groups.items():
        ordered = tuple(group[i] for i in sorted(group))
        problem = problems.get(sealed_sha256)
        missing = next((i for i, c in enumerate(ordered) if c.chunk != i), None)
        if problem is None and missing is not None:
            problem = f"incomplete: chunk {missing} is not in the file"
        out.append(CarriedAttachment(sealed_sha256, ordered, problem))
    return out


def judge_attachments(
    carried: CarriedFile,
    *,
    entry: Callable[[bytes], AttachmentManifest | None],
    held: Callable[[AttachmentManifest], bool],
) -> list[AttachmentJudged]:
    """One verdict per attachment in the file (PROTOCOL §23.4).

    ``entry`` finds, by sealed SHA-256, the manifest entry of a revision the reader opened
    (None: it cannot tell what the chunks are, so they are `unmatched` and not kept);
    ``held`` says which attachments it already holds a verified sealed copy of."""
    out = []
    for group in attachments_of(carried):
        named = entry(group.sealed_sha256)
        status, reason = _verdict(group, named, held)
        out.append(AttachmentJudged(group.sealed_sha256, status, reason, named, group.chunks))
    return out


def _verdict(
    group: CarriedAttachment,
    named: AttachmentManifest | None,
    held: Callable[[AttachmentManifest], bool],
) -> tuple[Status, str]:
    if named is None or named.transfer is None:
        return Status.UNMATCHED, "unmatched: no revision this reader has opened names it; not kept"
    if held(named):
        return Status.DUPLICATE, "already held"
    if group.problem is not None:
        return Status.REFUSED, group.problem
    m = named.transfer.manifest
    if len(group.chunks) != m.chunk_count:
        return Status.REFUSED, (
            f"incomplete: {len(group.chunks)} of its {m.chunk_count} chunks are in the file"
        )
    plain = hashlib.sha256()
    size = 0
    try:
        for piece in open_chunks(
            named.transfer.key,
            named.attachment_id,
            (c.data for c in group.chunks),
            chunk_size=m.chunk_size,
            expected=m,
        ):
            plain.update(piece)
            size += len(piece)
    except VerificationFailed:
        return Status.REFUSED, "altered: its chunks do not open as the attachment sealed"
    if size != named.size or plain.digest() != named.sha256:
        return Status.REFUSED, "altered: it does not match its revision's size and hash"
    return Status.ACCEPTED, ""
