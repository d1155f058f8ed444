"""Sealed sneakernet (PROTOCOL §23): `sealbox outbox export`, `sealbox relay import|list`,
`sealbox import`.

When the network is shut down, a device writes what it sealed and has not had receipted
into one carried file (`sync.carry`), which anyone may carry; any enrolled device queues
it for its next sync (a relay push), and a coordinator reads it with no server at all.
Every item of a file is judged on its own (`sync.carry.judge`): what is refused says why,
nothing is applied twice, and the author's outbox is never touched by an export (it purges
only on receipts, §15.3).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.local import carried
from clients.local.files import write_private
from clients.local.profile import Profile
from clients.reference_cli.attachments import PENDING_KIND
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
from sync.carry import CarriedFile, CarryError, Judged, Status, judge, read_carried, write_carried

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
_MAX_FILE = 2 * 1024 * 1024 * 1024
"""A carried file larger than this is not read (it is no outbox a device could export)."""


@outbox_app.command("export")
def outbox_export(
    to: Annotated[Path, typer.Option("--to", help="Directory to write the file in (a USB stick).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Write the outbox (sealed, not yet receipted) to one file anyone may carry.

    The file holds only the signed, sealed envelopes, padded: no report can be read from
    it. The outbox is left as it is: it empties when the server's receipts come back,
    whoever brought the envelopes there.
    """
    with _errors(as_json), _profile(home) as profile:
        state = profile.device_state()
        if not state.outbox:
            raise Exit(Code.LOCAL, "the outbox is empty: nothing to export")
        if not to.is_dir():
            raise Exit(Code.FILES, f"{safe(to)} is not a directory")
        data = write_carried(item.data for item in state.outbox)
        path = to / f"sealbox-{secrets.token_hex(8)}{_SUFFIX}"  # the name tells nothing
        write_private(path, data)
        attachments = profile.store.count(PENDING_KIND)
        summary = {
            "file": str(path),
            "envelopes": len(state.outbox),
            "bytes": len(data),
            "attachments_not_carried": attachments,
        }

        def human() -> None:
            err.print(
                f"Wrote {plural(len(state.outbox), 'sealed envelope')} ({len(data)} bytes,"
                f" padded) to {shown(str(path))}. It is safe to carry: nothing in it can be"
                " read without a coordinator's key. They stay in the outbox until the server"
                " receipts them.",
                highlight=False,
            )
            if attachments:
                err.print(
                    f"{plural(attachments, 'attachment')} not carried: they upload from this"
                    " device when it is back online.",
                    highlight=False,
                )

        _out(as_json, summary, human)


def _read(path: Path) -> CarriedFile:
    if path.stat().st_size > _MAX_FILE:
        raise Exit(Code.LOCAL, f"{safe(path)} is too large to be a carried file")
    try:
        return read_carried(path.read_bytes())
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
    refused = sum(1 for v in verdicts if v.status is Status.REFUSED)
    data = {
        "file": str(path),
        "complete": file.complete,
        "problems": list(file.problems),
        "items": items,
        "refused": refused,
        **extra,
    }

    def human() -> None:
        table = Table("#", "envelope", "status", "reason", title=f"{path.name}: {done}")
        for x in items:
            table.add_row(
                str(x["index"]), (x["envelope_id"] or "-")[:16], x["status"], cell(x["reason"])
            )
        console().print(table)
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
        parsed = _read(file)
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
        extra = {"queued": len(usable), "relay_queue": profile.store.count("relay")}
        if me is None:
            err.print(
                "This device is not admitted yet: it relays once a coordinator admits it.",
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
        parsed = _read(file)
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
        extra = {"imported": len(usable), "findings": [f.text() for f in view.findings()]}
        _report(as_json, file, parsed, verdicts, f"{len(usable)} taken in", extra)
