"""`sealbox evidence export|verify`: verifiable evidence bundles (PROTOCOL §22, docs/EVIDENCE.md).

``export REPORT... -o FILE`` (coordinators) writes one bundle for the chosen reports only,
assembled by `clients.local.evidence.export_bundle`; attachments are fetched from the server
with the verified download (or read from ``--attachments-from DIR``, matched by SHA-256, or
left out with ``--no-attachments``).  ``verify FILE`` needs no profile, no server and no
organisation key: it prints what the bundle proves and what it only claims, and with
``--html OUT`` writes the summary page rendered from what verified.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clients.local.attachment_reading import attachment_plaintext
from clients.local.files import write_private
from clients.local.sealing import local_copy
from clients.local.transport import Transport
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _out,
    _profile,
    _require_coordinator,
    _resolve_report,
    _transport,
    err,
)
from clients.reference_cli.render import console, safe, shown
from clients.reference_cli.render import progress as render_progress
from sync.report import AttachmentManifest

# The evidence modules (bundle rules, the HTML summary's templates) load with the evidence
# commands only: every other command would pay ~90 ms for them at start-up.
if TYPE_CHECKING:
    from sync.evidence import VerifiedBundle

__all__ = ["evidence_app"]

evidence_app = typer.Typer(help="Verifiable evidence bundles of reports.", no_args_is_help=True)


def _from_dir(directory: Path) -> dict[bytes, Path]:
    """Files under ``directory`` by their SHA-256 (the name a file has there does not matter)."""
    out = {}
    for path in sorted(directory.expanduser().rglob("*")):
        if path.is_file():
            h = hashlib.sha256()
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    h.update(block)
            out[h.digest()] = path
    return out


@evidence_app.command("export")
def export_command(
    reports: Annotated[list[str], typer.Argument(help="Report ids (or unique prefixes).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle file to write.")],
    attachments_from: Annotated[
        Path | None,
        typer.Option("--attachments-from", help="Take attachments from files in this directory."),
    ] = None,
    no_attachments: Annotated[
        bool, typer.Option("--no-attachments", help="Leave attachment files out (hashes stay).")
    ] = False,
    labels: Annotated[
        bool, typer.Option("--labels", help="State the device labels (names) this profile reads.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Write one verifiable evidence bundle for the chosen reports (plaintext: mode 0600)."""
    from clients.local.evidence import EvidenceExportError, export_bundle
    from sync.evidence import verify_bundle

    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        output = output.expanduser()
        if output.exists() and not force:
            raise Exit(Code.LOCAL, f"{output} exists; use --force to replace it")
        view = profile.view()
        chosen = [_resolve_report(view, profile, prefix) for prefix in reports]
        local = _from_dir(attachments_from) if attachments_from is not None else None
        opened: list[Transport] = []  # the server is asked only for what is not on this device

        def transport() -> Transport:
            if not opened:
                opened.append(_transport(profile))
            return opened[0]

        def fetch(entry: AttachmentManifest) -> bytes | None:
            if local is not None:
                path = local.get(entry.sha256)
                return path.read_bytes() if path is not None else None
            if no_attachments:
                return None
            copy = local_copy(profile, entry)
            # In memory, as the bundle itself is built: no plaintext file to leave behind.
            with render_progress(quiet=as_json, transfer=True) as progress:
                sealed = entry.transfer.manifest.total_size if entry.transfer else None
                task = progress.add_task(f"Fetching {shown(entry.name)}", total=sealed)
                return attachment_plaintext(
                    None if copy else transport(), profile.org_path, entry, local=copy,
                    advance=lambda n: progress.advance(task, n),
                )  # fmt: skip

        try:
            data = export_bundle(profile, chosen, now=int(time.time()), fetch=fetch, labels=labels)
        except EvidenceExportError as exc:
            raise Exit(Code.LOCAL, str(exc)) from None
        finally:
            for t in opened:
                t.close()
        write_private(output, data)
        result = verify_bundle(data)
        summary: dict[str, Any] = {
            "file": str(output),
            "bytes": len(data),
            "reports": [r.hex() for r in result.reports],
            "revisions": len(result.revisions),
            "attachments": len(result.attachments),
            "attachments_included": sum(1 for a in result.attachments.values() if a.included),
            "checkpoints": len(result.checkpoints),
        }
        _out(
            as_json,
            summary,
            lambda: console().print(
                f"Wrote {safe(str(output))}: {len(data):,} bytes, {summary['revisions']}"
                f" revisions of {len(result.reports)} report(s),"
                f" {summary['attachments_included']}/{summary['attachments']} attachments,"
                f" {summary['checkpoints']} checkpoint(s).",
                highlight=False,
            ),
        )
        err.print(
            "note: the bundle holds report content in plaintext (mode 0600); anyone who gets"
            " it can read those reports, and only those.",
            highlight=False,
        )


def _json(result: VerifiedBundle) -> dict[str, Any]:
    from clients.local.evidence_summary import timeline
    from sync.evidence import claimed, proven

    return {
        "verified": True,
        "org_id": result.org_id.hex(),
        "exporter": result.exporter.hex(),
        "roster_version": result.roster_version,
        "fingerprint": result.fingerprint.hex(),
        "genesis_fingerprint": result.genesis_fingerprint.hex(),
        "proven": proven(result),
        "claimed": claimed(result),
        "reports": {
            report.hex(): {
                "state": state.to_json(),
                "timeline": timeline(result, report),
            }
            for report, state in result.states.items()
        },
    }


def _human(result: VerifiedBundle) -> None:
    from clients.local.evidence_summary import timeline
    from sync.evidence import claimed, proven

    out = console()
    out.print("[bold green]VERIFIED[/] (offline, with the keys the bundle's roster proves)")
    out.print("\n[bold]Proven:[/]")
    for line in proven(result):
        out.print(f"  - {safe(line)}", highlight=False)
    out.print("\n[bold]Only claimed:[/]")
    for line in claimed(result):
        out.print(f"  - {safe(line)}", highlight=False)
    for report in result.states:
        out.print(f"\n[bold]Report {report.hex()}[/]")
        for row in timeline(result, report):
            did = "; ".join(str(x) for x in row["did"])
            out.print(
                f"  {row['id']} by {row['device']} ({row['role']}) seq {row['seq']}:"
                f" written {row['written']} (device clock, claimed); stored by"
                f" {row['logged']}: {safe(did)}",
                highlight=False,
            )


@evidence_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="The evidence bundle file.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the summary page of what verified.")
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Verify a bundle offline (no server, no organisation key); say what is proven and
    what is only claimed.  It reads no profile (``--home`` is accepted and unused)."""
    from clients.local.evidence_summary import render_summary
    from sync.evidence import EvidenceRefused, verify_bundle

    del home
    with _errors(as_json):
        data = bundle.expanduser().read_bytes()
        started = time.perf_counter()
        try:
            result = verify_bundle(data)
        except EvidenceRefused as exc:
            raise Exit(Code.LOCAL, f"NOT VERIFIED: {exc}") from None
        seconds = time.perf_counter() - started
        if html is not None:
            write_private(html.expanduser(), render_summary(result).encode())
        _out(as_json, {**_json(result), "seconds": round(seconds, 3)}, lambda: _human(result))
