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

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.local import carried, carrying
from clients.local.carrying import CarryRefused
from clients.local.files import write_private
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _out,
    _profile,
    err,
)
from clients.reference_cli.render import cell, console, plural, safe, shown
from sync.carry import CarriedFile, Judged
from sync.carry_attachments import AttachmentJudged
from sync.roster import Role

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
    with _errors(as_json), _profile(home) as profile, _carrying(None):
        if not to.is_dir():
            raise Exit(Code.FILES, f"{safe(to)} is not a directory")
        limit = None if max_mb is None else max_mb * _MB
        with carrying.plan_export(profile, attachments=attachments, limit=limit) as plan:
            path = to / f"sealbox-{secrets.token_hex(8)}{carrying.SUFFIX}"  # tells nothing
            write_private(path, plan.pieces())
        written, chosen, left = path.stat().st_size, plan.chosen, plan.left_out
        summary = {
            "file": str(path),
            "envelopes": len(plan.envelopes),
            "attachments": len(chosen),
            "bytes": written,
            "attachments_not_carried": left,
        }

        def human() -> None:
            carried_too = f" and {plural(len(chosen), 'sealed attachment')}" if chosen else ""
            err.print(
                f"Wrote {plural(len(plan.envelopes), 'sealed envelope')}{carried_too} ({written}"
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
def _carrying(path: Path | None) -> Iterator[None]:
    """`CarryRefused` as the command's error (naming the file, if there is one)."""
    try:
        yield
    except CarryRefused as exc:
        where = f"{safe(path)}: " if path is not None else ""
        raise Exit(Code.REFUSED if exc.refused else Code.LOCAL, f"{where}{exc}") from None


@contextmanager
def _opened(path: Path) -> Iterator[CarriedFile]:
    with _carrying(path), carrying.opened(path) as parsed:
        yield parsed


def _report(
    as_json: bool,
    path: Path,
    file: CarriedFile,
    verdicts: list[Judged],
    refused: int,
    done: str,
    extra: dict[str, Any],
    attachments: list[AttachmentJudged] | None = None,
) -> None:
    items = carrying.item_rows(verdicts)
    judged = carrying.attachment_rows(attachments or [])
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
    with _errors(as_json), _profile(home) as profile, _opened(file) as parsed:
        with _carrying(None):
            done = carrying.relay_import(profile, parsed)
        extra = {
            "queued": done.queued,
            "relay_queue": done.relay_queue,
            "attachments_not_relayed": done.attachments_not_relayed,
        }
        if done.not_admitted:
            err.print(
                "This device is not admitted yet: it relays once a coordinator admits it.",
                highlight=False,
            )
        if done.attachments_not_relayed:
            err.print(
                f"{plural(done.attachments_not_relayed, 'attachment')} in the file not relayed:"
                " the server takes an attachment only from its author's device, which uploads"
                " it once online (a coordinator can read them from this file with"
                " `sealbox import`).",
                highlight=False,
            )
        queued = f"{done.queued} queued for the next sync"
        _report(as_json, file, parsed, done.verdicts, done.refused, queued, extra)


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
        if profile.role is not Role.COORDINATOR:
            raise Exit(
                Code.LOCAL,
                "only coordinators can read a carried file; a field device can relay it to"
                f" the server: `sealbox relay import {safe(file)}`, then `sealbox sync`",
            )
        with _opened(file) as parsed:
            done = carrying.coordinator_import(profile, parsed)
            extra = {
                "imported": done.imported,
                "attachments_kept": done.kept,
                "findings": done.findings,
            }
            kept = f", {plural(done.kept, 'attachment')} kept" if done.kept else ""
            taken = f"{done.imported} taken in{kept}"
            _report(
                as_json, file, parsed, done.verdicts, done.refused, taken, extra, done.attachments
            )
