"""Sealed sneakernet for both clients (PROTOCOL §23): what goes into a carried file, and
what a device does with one it is handed.  The CLI (`clients.reference_cli.carry_commands`)
and the Desk only show the outcomes.

* `plan_export`: the outbox (sealed, not yet receipted) and the sealed attachments the
  server has not confirmed, cut to a size limit (a messenger's), as one carried file to
  write or to stream.  The sealed copies are opened when planned, so a sync that purges
  one meanwhile cannot cut the file short.
* `opened`: a carried file memory-mapped (frames are read one at a time, never whole).
* `relay_import`: another device's envelopes queued for this device's next sync.
* `coordinator_import`: read with no server, verified as the feed's envelopes are; the
  attachments that open as a verified revision names them kept as sealed copies (§23.4).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from clients.local import carried
from clients.local.profile import Profile
from clients.local.sealing import (
    PENDING_KIND,
    SEALED_DIR,
    keep_sealed_copy,
    local_copy,
    sealed_chunks,
)
from clients.reference_cli.attachments import pending_uploads
from crypto import VerifyKey
from crypto.padding import padded_length
from sync.carry import (
    CHUNK_FRAME_OVERHEAD,
    CarriedFile,
    CarryError,
    Judged,
    Status,
    carried_length,
    carried_pieces,
    judge,
    read_carried,
)
from sync.carry_attachments import AttachmentJudged, attachments_of, judge_attachments
from sync.client import CoordinatorView, PendingUpload
from sync.report import AttachmentManifest

__all__ = [
    "CarryRefused",
    "CoordinatorImport",
    "OutboxExport",
    "RelayImport",
    "attachment_rows",
    "coordinator_import",
    "item_rows",
    "opened",
    "plan_export",
    "relay_import",
]

SUFFIX = ".carried"


class CarryRefused(Exception):
    """Nothing was written or taken in; the message says why.  ``refused``: this device
    may not do it (revoked), rather than nothing to do or a file that is not one."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


# --- export ---------------------------------------------------------------------------------------


@dataclass
class OutboxExport:
    """One carried file planned: its envelopes, the attachments chosen (their sealed copies
    open), how many were left out, and its exact length once padded."""

    envelopes: list[bytes]
    chosen: list[tuple[PendingUpload, BinaryIO]]
    left_out: int
    length: int
    _files: ExitStack = field(default_factory=ExitStack)

    def pieces(self) -> Iterator[bytes]:
        """The file, in pieces to write or send as they come (bounded memory)."""
        return carried_pieces(
            self.envelopes,
            ((p.manifest.sha256, sealed_chunks(f, p.manifest)) for p, f in self.chosen),
        )

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> OutboxExport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _frames_bytes(p: PendingUpload) -> int:
    return p.manifest.total_size + p.manifest.chunk_count * CHUNK_FRAME_OVERHEAD


def plan_export(
    profile: Profile, *, attachments: bool = True, limit: int | None = None
) -> OutboxExport:
    """The carried file of this device's outbox and, unless ``attachments`` is False, of
    the sealed attachments awaiting upload that fit in ``limit`` bytes (the reports always
    go, or nothing does).  The caller closes it (it holds the sealed copies open)."""
    outbox = profile.device_state().outbox
    if not outbox:
        raise CarryRefused("the outbox is empty: nothing to export")
    envelopes = [item.data for item in outbox]
    size = carried_length(envelopes)
    if limit is not None and padded_length(size) > limit:
        raise CarryRefused(f"the reports alone take {padded_length(size)} bytes: over the limit")
    plan = OutboxExport(envelopes, [], profile.store.count(PENDING_KIND), 0)
    directory = Path(profile.home) / SEALED_DIR
    try:
        for pending in pending_uploads(profile.store) if attachments else []:
            more = _frames_bytes(pending)
            if limit is not None and padded_length(size + more) > limit:
                continue
            try:
                handle = plan._files.enter_context((directory / pending.sealed_file).open("rb"))
            except FileNotFoundError:
                continue  # no sealed copy here (purged, or never kept): uploads later
            plan.chosen.append((pending, handle))
            size += more
    except BaseException:
        plan.close()
        raise
    plan.left_out -= len(plan.chosen)
    plan.length = padded_length(size)
    return plan


# --- import ---------------------------------------------------------------------------------------


@contextmanager
def opened(source: Path | BinaryIO) -> Iterator[CarriedFile]:
    """The carried file at ``source`` (a path, or a real file already open),
    memory-mapped: frames are read from it one at a time, never the whole into memory."""
    with source.open("rb") if isinstance(source, Path) else nullcontext(source) as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise CarryRefused("not a Sealbox carried file (empty)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            try:
                yield read_carried(mapped)
            except CarryError as exc:
                raise CarryRefused(str(exc)) from None


def item_rows(verdicts: list[Judged]) -> list[dict[str, Any]]:
    """Each envelope's verdict, for a table or JSON (the file's order)."""
    return [
        {
            "index": v.index,
            "envelope_id": v.envelope_id.hex() if v.envelope_id else None,
            "status": str(v.status),
            "reason": v.reason,
        }
        for v in verdicts
    ]


def attachment_rows(attachments: list[AttachmentJudged]) -> list[dict[str, Any]]:
    """Each carried attachment's verdict, named by the report's entry when one matched."""
    return [
        {
            "sealed_sha256": a.sealed_sha256.hex(),
            "attachment_id": a.entry.attachment_id.hex() if a.entry else None,
            "name": a.entry.name if a.entry else None,
            "chunks": len(a.chunks),
            "status": str(a.status),
            "reason": a.reason,
        }
        for a in attachments
    ]


def _roster_authors(profile: Profile) -> dict[bytes, tuple[VerifyKey, int | None]]:
    return {m.device_id: (m.signing_key, m.revoked_after) for m in profile.roster.roster.members}


@dataclass(frozen=True)
class RelayImport:
    verdicts: list[Judged]
    queued: int
    relay_queue: int
    attachments_not_relayed: int
    not_admitted: bool

    @property
    def refused(self) -> int:
        return sum(1 for v in self.verdicts if v.status is Status.REFUSED)


def relay_import(profile: Profile, parsed: CarriedFile) -> RelayImport:
    """Queue the file's envelopes for this device's next sync (a relay push), each checked
    here (this organisation, its author's signature when the author is in the roster) and
    again by the server.  Attachments are not relayed: the server takes one only from its
    author's device."""
    me = profile.roster.roster.member(profile.device_id)
    if me is not None and me.revoked_after is not None:
        raise CarryRefused("this device is revoked: it cannot relay for others", refused=True)
    authors = _roster_authors(profile)
    own = {i.envelope_id for i in profile.device_state().outbox}
    queued = {bytes.fromhex(name) for name, _ in profile.store.items("relay")}
    verdicts = judge(
        parsed,
        org_id=profile.org_id,
        author=authors.get,
        held=lambda i: i in own or i in queued,
        refuse_after_revocation=True,
    )
    usable = [(v.envelope_id, v.data) for v in verdicts if v.usable and v.envelope_id]
    carried.queue_relay(profile.store, usable)
    return RelayImport(
        verdicts,
        len(usable),
        profile.store.count("relay"),
        len(attachments_of(parsed)),
        me is None,
    )


@dataclass(frozen=True)
class CoordinatorImport:
    verdicts: list[Judged]
    attachments: list[AttachmentJudged]
    imported: int
    findings: list[str]

    @property
    def kept(self) -> int:
        return sum(1 for a in self.attachments if a.usable)

    @property
    def refused(self) -> int:
        return sum(1 for v in self.verdicts if v.status is Status.REFUSED) + sum(
            1 for a in self.attachments if a.status is Status.REFUSED
        )


def coordinator_import(profile: Profile, parsed: CarriedFile) -> CoordinatorImport:
    """Take the file's envelopes into this coordinator's view with no server, and keep the
    sealed attachments a verified revision names.  Envelopes already held count once; the
    feed later finds them held and applies nothing twice."""
    view = profile.view()
    authors = _roster_authors(profile)
    for enrollment in profile.enrollments():
        authors.setdefault(enrollment.device_id, (enrollment.signing_key, None))
    verdicts = judge(
        parsed,
        org_id=profile.org_id,
        author=authors.get,
        held=lambda i: i in view.envelopes or i in view.held,
        refuse_after_revocation=False,  # the view flags them, as it does from the feed
    )
    usable = [v for v in verdicts if v.usable and v.envelope_id]
    profile.keep_envelopes([v.data for v in usable])
    carried.mark_carried(profile.store, [v.envelope_id for v in usable if v.envelope_id])
    entries = _sealed_entries(profile.view()) if parsed.chunks else {}
    attachments = judge_attachments(
        parsed,
        entry=entries.get,
        held=lambda entry: local_copy(profile, entry) is not None,
    )
    for a in attachments:
        if a.usable and a.entry is not None:
            keep_sealed_copy(profile, a.entry, (c.data for c in a.chunks))
    findings = [f.text() for f in view.findings()]
    return CoordinatorImport(verdicts, attachments, len(usable), findings)


def _sealed_entries(view: CoordinatorView) -> dict[bytes, AttachmentManifest]:
    """Every attachment the view's revisions name, by the SHA-256 of its sealed chunks."""
    return {
        entry.transfer.manifest.sha256: entry
        for report in view.report_ids()
        for revision in view.revisions(report)
        for entry in revision.content.attachments
        if entry.transfer is not None
    }
