"""Sealed sneakernet (PROTOCOL §23): `sealbox outbox export`, `sealbox relay import|list`,
`sealbox import`.

When the network is shut down, a device writes what it sealed and has not had receipted
into one carried file (`sync.carry`), which anyone may carry; any enrolled device queues
it for its next sync (a relay push), and a coordinator reads it with no server at all.
Every item of a file is judged on its own (`sync.carry.judge`): what is refused says why,
nothing is applied twice, and the author's outbox is never touched by an export (it purges
only on receipts, §15.3).

The file also carries the sealed attachments the server has not confirmed (§23.1): a
coordinator's import keeps those that open as a revision it verified names them
(`sync.carry_attachments`), so they open with no server; a relay leaves them to their
author's own upload.  Files are memory-mapped, never read whole.
"""

from __future__ import annotations

import mmap
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.local import carried
from clients.local.files import write_private
from clients.local.profile import Profile
from clients.local.sealing import (
    PENDING_KIND,
    SEALED_DIR,
    keep_sealed_copy,
    local_copy,
    sealed_chunks,
)
from clients.reference_cli.attachments import pending_uploads
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _out,
    _profile,
    _require_coordinator,
    err,
)
from clients.reference_cli.render import cell, console, plural, safe, shown
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

__all__ = ["import_command", "outbox_app", "relay_app"]

outbox_app = typer.Typer(
    help="What waits to be sent; `outbox export` writes it to a file anyone may carry.",
    invoke_without_command=True,
)
relay_app = typer.Typer(
    help="Carry other devices' sealed envelopes to the server (a relay push).",
    no_args_is_help=True,
)

_SUFFIX = ".carried"
_MB = 1024 * 1024


def _carryable(profile: Profile) -> list[tuple[PendingUpload, Path]]:
    """The attachments this device sealed and the server has not confirmed, with a copy."""
    directory = Path(profile.home) / SEALED_DIR
    return [
        (p, directory / p.sealed_file)
        for p in pending_uploads(profile.store)
        if (directory / p.sealed_file).is_file()
    ]


def _frames_bytes(p: PendingUpload) -> int:
    return p.manifest.total_size + p.manifest.chunk_count * CHUNK_FRAME_OVERHEAD


@outbox_app.command("export")
def outbox_export(
    to: Annotated[Path, typer.Option("--to", help="Directory to write the file in (a USB stick).")],
    attachments: Annotated[
        bool,
        typer.Option(
            "--attachments/--no-attachments",
            help="Carry the sealed attachments not yet uploaded (default) or only the reports.",
        ),
    ] = True,
    max_mb: Annotated[
        int | None,
        typer.Option(
            "--max-mb",
            min=1,
            help="Leave out the attachments that would make the file larger than this many"
            " MiB (a messenger's limit); the reports always go.",
        ),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Write the outbox (sealed, not yet receipted) and its sealed attachments to one file
    anyone may carry.

    The file holds only the signed, sealed envelopes and the attachments' ciphertext,
    padded: no report or attachment can be read from it. The outbox is left as it is: it
    empties when the server's receipts come back, whoever brought the envelopes there, and
    attachments still upload from this device once it is online.
    """
    with _errors(as_json), _profile(home) as profile:
        state = profile.device_state()
        if not state.outbox:
            raise Exit(Code.LOCAL, "the outbox is empty: nothing to export")
        if not to.is_dir():
            raise Exit(Code.FILES, f"{safe(to)} is not a directory")
        envelopes = [item.data for item in state.outbox]
        size = carried_length(envelopes)
        limit = None if max_mb is None else max_mb * _MB
        if limit is not None and padded_length(size) > limit:
            raise Exit(
                Code.LOCAL, f"the reports alone take {padded_length(size)} bytes: over --max-mb"
            )
        chosen: list[tuple[PendingUpload, Path]] = []
        left = profile.store.count(PENDING_KIND)
        for pending, path in _carryable(profile) if attachments else []:
            more = _frames_bytes(pending)
            if limit is None or padded_length(size + more) <= limit:
                chosen.append((pending, path))
                size += more
        left -= len(chosen)
        pieces = carried_pieces(
            envelopes, ((p.manifest.sha256, sealed_chunks(f, p.manifest)) for p, f in chosen)
        )
        path = to / f"sealbox-{secrets.token_hex(8)}{_SUFFIX}"  # the name tells nothing
        write_private(path, pieces)
        written = path.stat().st_size
        summary = {
            "file": str(path),
            "envelopes": len(envelopes),
            "attachments": len(chosen),
            "bytes": written,
            "attachments_not_carried": left,
        }

        def human() -> None:
            carried_too = f" and {plural(len(chosen), 'sealed attachment')}" if chosen else ""
            err.print(
                f"Wrote {plural(len(envelopes), 'sealed envelope')}{carried_too} ({written}"
                f" bytes, padded) to {shown(str(path))}. It is safe to carry: nothing in it can"
                " be read without a coordinator's key. They stay on this device until the"
                " server has them.",
                highlight=False,
            )
            if left:
                err.print(
                    f"{plural(left, 'attachment')} not carried"
                    f" ({'over --max-mb' if attachments else '--no-attachments'}, or no sealed"
                    " copy here): they upload from this device when it is back online.",
                    highlight=False,
                )

        _out(as_json, summary, human)


@contextmanager
def _opened(path: Path) -> Iterator[CarriedFile]:
    """The carried file at ``path``, memory-mapped: frames are read from it one at a time."""
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            raise Exit(Code.LOCAL, f"{safe(path)}: not a Sealbox carried file (empty)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            try:
                yield read_carried(mapped)
            except CarryError as exc:
                raise Exit(Code.LOCAL, f"{safe(path)}: {exc}") from None


def _roster_authors(profile: Profile) -> dict[bytes, tuple[VerifyKey, int | None]]:
    return {m.device_id: (m.signing_key, m.revoked_after) for m in profile.roster.roster.members}


def _report(
    as_json: bool,
    path: Path,
    file: CarriedFile,
    verdicts: list[Judged],
    done: str,
    extra: dict[str, Any],
    attachments: list[AttachmentJudged] | None = None,
) -> None:
    items: list[dict[str, Any]] = [
        {
            "index": v.index,
            "envelope_id": v.envelope_id.hex() if v.envelope_id else None,
            "status": str(v.status),
            "reason": v.reason,
        }
        for v in verdicts
    ]
    judged: list[dict[str, Any]] = [
        {
            "sealed_sha256": a.sealed_sha256.hex(),
            "attachment_id": a.entry.attachment_id.hex() if a.entry else None,
            "name": a.entry.name if a.entry else None,
            "chunks": len(a.chunks),
            "status": str(a.status),
            "reason": a.reason,
        }
        for a in attachments or []
    ]
    refused = sum(1 for v in verdicts if v.status is Status.REFUSED)
    refused += sum(1 for a in attachments or [] if a.status is Status.REFUSED)
    data = {
        "file": str(path),
        "complete": file.complete,
        "problems": list(file.problems),
        "items": items,
        "refused": refused,
        **extra,
    }
    if attachments is not None:
        data["attachments"] = judged

    def human() -> None:
        table = Table("#", "envelope", "status", "reason", title=f"{path.name}: {done}")
        for x in items:
            table.add_row(
                str(x["index"]), (x["envelope_id"] or "-")[:16], x["status"], cell(x["reason"])
            )
        console().print(table)
        for a in judged:
            named = shown(a["name"]) if a["name"] else a["sealed_sha256"][:16]
            why = f": {shown(a['reason'])}" if a["reason"] else ""
            err.print(
                f"attachment {named} ({plural(a['chunks'], 'chunk')}): {a['status']}{why}",
                highlight=False,
            )
        for problem in file.problems:
            err.print(f"[bold yellow]WARNING[/] the file: {shown(problem)}", highlight=False)

    _out(as_json, data, human)
    if refused or not file.complete:
        raise typer.Exit(int(Code.LOCAL))


@relay_app.command("import")
def relay_import(
    file: Annotated[Path, typer.Argument(help="A carried file (from `sealbox outbox export`).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Queue another device's carried envelopes for this device's next sync (a relay push).

    Each item is checked here (this organisation, its author's signature when the author is
    in the roster) and again by the server; what is refused says why. Exit 1 if an item was
    refused or the file is damaged (the good items are queued all the same).
    """
    with _errors(as_json), _profile(home) as profile:
        me = profile.roster.roster.member(profile.device_id)
        if me is not None and me.revoked_after is not None:
            raise Exit(Code.REFUSED, "this device is revoked: it cannot relay for others")
        with _opened(file) as parsed:
            _relay_import(profile, file, parsed, me is None, as_json)


def _relay_import(
    profile: Profile, file: Path, parsed: CarriedFile, not_admitted: bool, as_json: bool
) -> None:
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
    groups = attachments_of(parsed)
    extra = {
        "queued": len(usable),
        "relay_queue": profile.store.count("relay"),
        "attachments_not_relayed": len(groups),
    }
    if not_admitted:
        err.print(
            "This device is not admitted yet: it relays once a coordinator admits it.",
            highlight=False,
        )
    if groups:
        err.print(
            f"{plural(len(groups), 'attachment')} in the file not relayed: the server takes"
            " an attachment only from its author's device, which uploads it once online"
            " (a coordinator can read them from this file with `sealbox import`).",
            highlight=False,
        )
    _report(as_json, file, parsed, verdicts, f"{len(usable)} queued for the next sync", extra)


@relay_app.command("list")
def relay_list(home: Home = None, as_json: Json = False) -> None:
    """Envelopes waiting to be relayed, and those the server refused when relayed."""
    with _errors(as_json), _profile(home) as profile:
        waiting = profile.store.count("relay")
        refused = carried.relay_refused(profile.store)
        data = {"waiting": waiting, "refused": refused}

        def human() -> None:
            err.print(f"{plural(waiting, 'envelope')} waiting to be relayed.")
            for r in refused:
                err.print(
                    f"[yellow]refused by the server:[/] {r['envelope_id'][:16]}"
                    f" {shown(r['status'])}: {shown(r['detail'])}",
                    highlight=False,
                )

        _out(as_json, data, human)


def import_command(
    file: Annotated[Path, typer.Argument(help="A carried file (from `sealbox outbox export`).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Coordinators: read a carried file with no server, verified as the feed's envelopes are.

    Envelopes already held count once; the feed later finds them held and applies nothing
    twice. Exit 1 if an item was refused or the file is damaged (the good items are kept).
    """
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _opened(file) as parsed:
            _coordinator_import(profile, file, parsed, as_json)


def _coordinator_import(profile: Profile, file: Path, parsed: CarriedFile, as_json: bool) -> None:
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
    kept = sum(1 for a in attachments if a.usable)
    extra = {
        "imported": len(usable),
        "attachments_kept": kept,
        "findings": [f.text() for f in view.findings()],
    }
    done = f"{len(usable)} taken in" + (f", {plural(kept, 'attachment')} kept" if kept else "")
    _report(as_json, file, parsed, verdicts, done, extra, attachments)


def _sealed_entries(view: CoordinatorView) -> dict[bytes, AttachmentManifest]:
    """Every attachment the view's revisions name, by the SHA-256 of its sealed chunks."""
    return {
        entry.transfer.manifest.sha256: entry
        for report in view.report_ids()
        for revision in view.revisions(report)
        for entry in revision.content.attachments
        if entry.transfer is not None
    }
