"""Sealing on this device, shared by the CLI and Sealbox Desk: a revision into the outbox, and
an attachment from any stream into its sealed copy and upload record (PROTOCOL §13).

* `seal_revision` seals one revision on the device chain and saves it in one transaction; a
  coordinator keeps its own envelopes at once (it seals to itself too).
* `seal_stream` reads a stream in pieces, seals it with a fresh key and attachment id
  (`crypto.stream.seal_chunks`) into ``DIRECTORY/<random>.sealed`` (mode 0600, fsync, then
  the directory fsynced), hashing the plaintext on the way: no plaintext byte is written.
  `seal_attachment` does so under the profile's ``attachments/`` and queues the upload
  record (id, geometry, hash, the sealed copy's name; no key) in the encrypted store. The
  key and the manifest go only into the report content.
* Sealed copies a device holds are read chunk by chunk (`sealed_chunks`): its own, waiting
  for upload, and, on a coordinator, those a carried file brought (`keep_sealed_copy`,
  PROTOCOL §23.4), which `local_copy` finds so that an attachment opens with no server.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

from clients.local.files import fsync_dir
from clients.local.profile import Profile
from crypto.stream import CHUNK_SIZE, Manifest, ManifestHasher, new_attachment_key, seal_chunks
from sync.attachments import SealedTransfer, chunk_length, chunk_offset
from sync.client import DeviceState, PendingUpload, seal_edit
from sync.report import AttachmentManifest, ReportContent
from sync.roster import Role

__all__ = [
    "COPY_KIND",
    "PENDING_KIND",
    "SEALED_DIR",
    "keep_sealed_copy",
    "local_copy",
    "read_chunk",
    "save_sealed",
    "seal_attachment",
    "seal_revision",
    "seal_stream",
    "sealed_chunks",
]

PENDING_KIND = "attachment-upload"
"""The store records of attachments sealed and still to upload."""
SEALED_DIR = "attachments"
"""Where, under the profile's home, the sealed copies are (random names)."""
COPY_KIND = "attachment-copy"
"""The store records of sealed copies a carried file brought: ``{f: file, h: sealed SHA-256}``."""


def seal_revision(
    profile: Profile, report: bytes, content: ReportContent, parents: tuple[bytes, ...] | None
) -> bytes:
    """Seal ``content`` as a revision of ``report`` into the outbox; its envelope id."""
    state = profile.device_state()
    envelope = seal_edit(
        state,
        roster=profile.roster,
        signing_key=profile.signing_key,
        report=report,
        content=content,
        parents=parents,
    )
    save_sealed(profile, state, {envelope.id})
    return envelope.id


def save_sealed(profile: Profile, state: DeviceState, sealed: set[bytes]) -> None:
    """Save the device state after sealing the envelopes ``sealed`` (one transaction)."""
    with profile.store.transaction():
        profile.save_device(state)
        if profile.role is Role.COORDINATOR:
            # A coordinator seals to itself too: keep its own revisions readable at once.
            profile.keep_envelopes(
                [i.data for i in state.outbox if i.envelope_id in sealed or i.report is None]
            )


class _HashingReader:
    """Reads a stream in pieces, hashing the plaintext as it goes (one pass)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int, /) -> bytes:
        data = self.handle.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def seal_stream(
    handle: BinaryIO, name: str, directory: Path, *, chunk_size: int = CHUNK_SIZE
) -> tuple[AttachmentManifest, PendingUpload]:
    """Seal what ``handle`` reads into ``directory``; the report entry and the upload record.

    ``name`` is the file's name (at most 255 characters kept); the media type is guessed
    from it."""
    key, attachment_id = new_attachment_key(), secrets.token_bytes(16)
    hasher = ManifestHasher(chunk_size)
    reader = _HashingReader(handle)

    def sealed() -> Iterator[bytes]:
        for chunk in seal_chunks(key, attachment_id, reader, chunk_size=chunk_size):
            hasher.update(chunk)
            yield chunk

    sealed_name = _write_sealed(directory, sealed())
    manifest = hasher.finish()
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    name = name[:255] or "attachment"
    entry = AttachmentManifest(
        attachment_id,
        name,
        reader.size,
        reader.sha256.digest(),
        media[:255],
        SealedTransfer(key, manifest),
    )
    return entry, PendingUpload(attachment_id, name, manifest, sealed_name)


def seal_attachment(
    profile: Profile, handle: BinaryIO, name: str, *, chunk_size: int = CHUNK_SIZE
) -> AttachmentManifest:
    """Seal a file for a report under the profile and queue its upload; its manifest entry."""
    directory = Path(profile.home) / SEALED_DIR
    entry, pending = seal_stream(handle, name, directory, chunk_size=chunk_size)
    profile.store.put_cbor(PENDING_KIND, pending.attachment_id.hex(), pending.to_cbor())
    return entry


def _write_sealed(directory: Path, chunks: Iterable[bytes]) -> str:
    """Write chunk ciphertexts to a new randomly named file (fsync, directory fsync)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.sealed"
    target = directory / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return name


def keep_sealed_copy(profile: Profile, entry: AttachmentManifest, chunks: Iterable[bytes]) -> None:
    """Keep the verified sealed chunks of ``entry`` (a carried file's, PROTOCOL §23.4)."""
    assert entry.transfer is not None
    name = _write_sealed(Path(profile.home) / SEALED_DIR, chunks)
    record = {"f": name, "h": entry.transfer.manifest.sha256}
    profile.store.put_cbor(COPY_KIND, entry.attachment_id.hex(), record)


def local_copy(profile: Profile, entry: AttachmentManifest) -> Path | None:
    """The sealed copy of ``entry`` on this device, if there is one of exactly its chunks:
    one a carried file brought, or this device's own still waiting for upload."""
    if entry.transfer is None:
        return None
    key = entry.attachment_id.hex()
    sealed = entry.transfer.manifest.sha256
    for kind in (COPY_KIND, PENDING_KIND):
        record = profile.store.get_cbor(kind, key)
        if record is not None and bytes(record["h"]) == sealed:
            path = Path(profile.home) / SEALED_DIR / str(record["f"])
            if path.is_file():
                return path
    return None


def read_chunk(handle: BinaryIO, manifest: Manifest, index: int) -> bytes:
    """Chunk ``index`` of a sealed copy, read at its offset (short if the file is cut)."""
    handle.seek(chunk_offset(index, manifest.chunk_size))
    return handle.read(
        chunk_length(
            index,
            chunk_size=manifest.chunk_size,
            chunk_count=manifest.chunk_count,
            total_size=manifest.total_size,
        )
    )


def sealed_chunks(source: Path | BinaryIO, manifest: Manifest) -> Iterator[bytes]:
    """The chunk ciphertexts of a sealed copy (its path, or a file already open), one at a
    time (a short file ends them early: the reader's verification then fails, as for a
    server that cut the stream)."""
    with source.open("rb") if isinstance(source, Path) else nullcontext(source) as handle:
        for index in range(manifest.chunk_count):
            data = read_chunk(handle, manifest, index)
            if not data:
                return
            yield data
