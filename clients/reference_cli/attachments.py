"""Attachments in the reference CLI: seal on attach, resumable upload on sync, verified download.

Theory of operation (docs/PROTOCOL.md §13):
* ``report new/edit --attach FILE`` calls `seal_for_report`: the file is read in pieces,
  sealed with a fresh key and attachment id (`crypto.stream.seal_chunks`) into
  ``HOME/attachments/<random>.sealed`` (mode 0600, fsync), and an upload record (id,
  geometry, hash, file name of the sealed copy; no key) is queued in the encrypted local
  store.  The key and the manifest go only into the report content.  The tool makes no
  plaintext copy; the original file is left where the user put it, and the command says
  so every time (it cannot reach the phone's gallery or backups).
* ``sealbox sync`` pushes the revision first (a report never waits for its media), then
  runs `sync.client.upload_flow` for each queued attachment; this module only reads the
  sealed chunks (`read_sealed_chunk`, at their offsets: at most `IN_FLIGHT` chunks are in
  memory, whatever the file size) and persists the flow's events (`UploadEvents`): after
  the server confirms the whole upload, the sealed copy is deleted (unless the profile's
  policy, ``sealbox attachments policy --keep-sealed``, keeps it) and the record removed.
* Downloads and the ``sealbox attachments`` commands are in `attachment_commands`.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from rich.progress import (
    Progress,
)

from clients.local.sealing import (
    COPY_KIND,
    PENDING_KIND,
    SEALED_DIR,
    read_chunk,
    seal_attachment,
    seal_stream,
)
from clients.local.transport import Transport
from clients.reference_cli.common import (
    Exit,
    err,
)
from clients.reference_cli.render import progress as render_progress
from clients.reference_cli.render import shown
from crypto.stream import CHUNK_SIZE
from sync.client import AttachmentFailed as UploadFailed
from sync.client import (
    AttachmentProgress,
    AttachmentStatesSeen,
    AttachmentUploaded,
    Event,
    PendingUpload,
    attachment_states_flow,
    drive,
    upload_all_flow,
)
from sync.report import AttachmentManifest

__all__ = [
    "PENDING_KIND",
    "SEALED_DIR",
    "AttachmentFailed",
    "UploadEvents",
    "attachment_state",
    "pending_uploads",
    "read_sealed_chunk",
    "refresh_attachment_states",
    "seal_file",
    "seal_for_report",
    "upload_pending",
]

STATE_KIND = "attachment-state"


class AttachmentFailed(Exit):
    """An attachment could not be uploaded or downloaded and verified (the message names it).

    Exit status 6 in every command (`clients.reference_cli.common._errors`)."""

    def __init__(self, message: str) -> None:
        super().__init__(6, message)


def seal_file(
    source: Path, directory: Path, *, chunk_size: int = CHUNK_SIZE
) -> tuple[AttachmentManifest, PendingUpload]:
    """Seal ``source`` into ``directory`` (streamed); the report entry and the upload record."""
    with source.open("rb") as handle:
        return seal_stream(handle, source.name, directory, chunk_size=chunk_size)


def seal_for_report(
    profile: Any, source: Path, *, chunk_size: int = CHUNK_SIZE, notify: bool = True
) -> Any:
    """``--attach FILE``: seal the file and queue its upload; the report's manifest entry."""
    if not source.is_file():
        raise AttachmentFailed(f"cannot attach {source.name!r}: not a readable file")
    with source.open("rb") as handle:
        entry = seal_attachment(profile, handle, source.name, chunk_size=chunk_size)
    if notify:
        # Never silent about plaintext left behind: the tool made no copy, but it cannot
        # delete the user's file (or the gallery's, or a backup's) for them.
        err.print(
            f"note: {shown(source.name)} was sealed for upload; the original file is still on this"
            " device in plaintext (and maybe in the gallery or backups): delete it if it"
            " must not stay.",
            highlight=False,
        )
    return entry


def pending_uploads(store: Any) -> list[PendingUpload]:
    out = []
    for _name, _raw in store.items(PENDING_KIND):
        out.append(PendingUpload.from_cbor(store.get_cbor(PENDING_KIND, _name)))
    return sorted(out, key=lambda p: p.attachment_id)


def read_sealed_chunk(profile: Any, pending: PendingUpload, index: int) -> bytes:
    """Chunk ``index`` of the sealed copy, read at its offset (the flow's ``read_chunk``)."""
    sealed = Path(profile.home) / SEALED_DIR / pending.sealed_file
    if not sealed.is_file():
        raise OSError(errno.ENOENT, "its sealed copy is gone from this device")
    with sealed.open("rb") as handle:
        data = read_chunk(handle, pending.manifest, index)
    if len(data) != pending.plan().transfer.chunk_length(index):
        raise OSError(errno.EIO, "the local sealed copy is damaged")
    return data


class UploadEvents:
    """Persists and shows the upload flows' events (used by `sync` and `attachments upload`)."""

    def __init__(
        self, profile: Any, progress: Progress, *, keep_sealed: bool | None = None
    ) -> None:
        self.profile = profile
        self.progress = progress
        self.queue = {p.attachment_id: p for p in pending_uploads(profile.store)}
        self.keep_sealed = (
            bool(profile.meta.get("keep_sealed_attachments", False))
            if keep_sealed is None
            else keep_sealed
        )
        total = sum(p.manifest.total_size for p in self.queue.values())
        self.task = progress.add_task("Uploading attachments", total=total, visible=False)
        self.done: dict[bytes, int] = {}

    def __call__(self, event: Event, summary: dict[str, Any]) -> None:
        store = self.profile.store
        if isinstance(event, AttachmentProgress):
            self.done[event.attachment_id] = event.done_bytes
            self.progress.update(self.task, completed=sum(self.done.values()), visible=True)
        elif isinstance(event, AttachmentUploaded):
            pending = self.queue.get(event.attachment_id)
            # Purge after the server confirmed the whole (the profile's policy).
            store.delete(PENDING_KIND, event.attachment_id.hex())
            if pending is not None:
                self.done[event.attachment_id] = pending.manifest.total_size
                if not self.keep_sealed:
                    (Path(self.profile.home) / SEALED_DIR / pending.sealed_file).unlink(
                        missing_ok=True
                    )
            summary["attachments_uploaded"] = summary.get("attachments_uploaded", 0) + 1
        elif isinstance(event, UploadFailed):
            summary["attachments_failed"] = summary.get("attachments_failed", 0) + 1
            summary.setdefault("attachments_errors", []).append(
                f"attachment {event.name!r}: {event.reason} (kept queued)"
            )
        elif isinstance(event, AttachmentStatesSeen):
            with store.transaction():
                for u in event.uploads:
                    record = {"s": u.state, "r": u.received_bytes, "t": u.total_size}
                    store.put_cbor(STATE_KIND, u.upload_id.hex(), record)


def upload_pending(profile: Any, transport: Transport, *, quiet: bool = False) -> dict[str, Any]:
    """Upload every queued attachment now (resumable); a summary of what happened."""
    summary: dict[str, Any] = {"attachments_uploaded": 0}
    with render_progress(quiet=quiet, transfer=True) as progress:
        events = UploadEvents(profile, progress)
        flow = upload_all_flow(
            pending_uploads(profile.store),
            org_path=profile.org_path,
            read_chunk=lambda p, i: read_sealed_chunk(profile, p, i),
        )
        drive(
            flow,
            transport.send,
            lambda e: events(e, summary),
            send_many=transport.send_many,
        )
    summary["attachments_pending"] = len(pending_uploads(profile.store))
    return summary


def refresh_attachment_states(profile: Any, transport: Transport, *, page_size: int = 1000) -> int:
    """Coordinators: record every upload's state for offline display; how many were seen."""
    summary: dict[str, Any] = {}
    with Progress(disable=True) as progress:
        events = UploadEvents(profile, progress)
        flow = attachment_states_flow(org_path=profile.org_path, page_size=page_size)
        return drive(flow, transport.send, lambda e: events(e, summary))


def attachment_state(profile: Any, attachment_id: bytes) -> dict[str, Any]:
    """What the last sync said of one attachment: state (pending until seen complete), or
    ``carried`` while the server has not the whole of it but a carried file brought a
    verified sealed copy here (PROTOCOL §23.4), which opens with no server."""
    record = profile.store.get_cbor(STATE_KIND, attachment_id.hex()) or {"s": "pending", "r": 0}
    state = record["s"]
    if state != "complete" and profile.store.get(COPY_KIND, attachment_id.hex()) is not None:
        state = "carried"
    return {"state": state, "received_bytes": record["r"]}
