"""`sealbox attachments ...` commands and the verified download (PROTOCOL §13.6).

``sealbox attachments get REPORT NAME -o FILE`` (coordinators) reads the attachment through
`clients.local.attachment_reading` (each chunk verified with the AEAD before its plaintext
is written) into a temporary file next to FILE; the file is renamed into place only after the
whole stream, the manifest and the plaintext SHA-256 verified.  On any failure the
partial output is deleted and the error names the attachment.
"""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from clients.local.attachment_reading import read_attachment
from clients.local.sealing import local_copy
from clients.local.transport import NetworkError, Transport
from clients.reference_cli.attachments import (
    SEALED_DIR,
    AttachmentFailed,
    attachment_state,
    pending_uploads,
    upload_pending,
)
from clients.reference_cli.common import (
    Exit,
    Home,
    Json,
    _errors,
    _out,
    _profile,
    _resolve_report,
    _transport,
    err,
)
from clients.reference_cli.render import plural, safe, shown
from clients.reference_cli.render import progress as render_progress
from sync.attachments import UploadStatus
from sync.client import Request, decode
from sync.messages import b64encode
from sync.report import AttachmentManifest

__all__ = ["attachments_app", "download_attachment"]


# --- download -------------------------------------------------------------------------------------


def download_attachment(
    transport: Transport | None,
    org_path: str,
    entry: AttachmentManifest,
    output: Path,
    *,
    quiet: bool = False,
    local: Path | None = None,
) -> int:
    """Verify and write one attachment to ``output``, from ``local`` (a sealed copy on this
    device) or else the server; its size in bytes."""
    if entry.transfer is None:
        raise AttachmentFailed(f"attachment {entry.name!r} has no sealed transfer entry")
    output = output.expanduser()
    tmp = output.with_name(f".{output.name}.{secrets.token_hex(6)}.partial")
    with render_progress(quiet=quiet, transfer=True) as progress:
        total = entry.transfer.manifest.total_size
        task = progress.add_task(f"Fetching {shown(entry.name)}", total=total)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                written = read_attachment(
                    transport, org_path, entry, out.write,
                    advance=lambda n: progress.advance(task, n), local=local,
                )  # fmt: skip
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, output)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return written


# --- commands -------------------------------------------------------------------------------------

attachments_app = typer.Typer(help="Attachments of reports (coordinators download them).")


def _find(profile: Any, report_prefix: str, name: str) -> tuple[bytes, AttachmentManifest]:
    view = profile.view()
    report = _resolve_report(view, profile, report_prefix)
    state = view.report(report)
    if state is None:
        raise Exit(1, "this report has not been pulled yet; run `sealbox sync`")
    matches = [a for a in state.attachments if a.name == name]
    if not matches:
        matches = [a for a in state.attachments if a.attachment_id.hex().startswith(name.lower())]
    if len(matches) != 1:
        raise Exit(1, f"no single attachment named {name!r} in this report")
    return report, matches[0]


@attachments_app.command("get")
def get_command(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    name: Annotated[str, typer.Argument(help="Attachment name (or id prefix).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the file.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Download an attachment, verifying every chunk before it is written."""
    from sync.roster import Role

    with _errors(as_json), _profile(home) as profile:
        if profile.role is not Role.COORDINATOR:
            raise Exit(1, "only coordinators can download attachments")
        if output.exists() and not force:
            raise Exit(1, f"{output} exists; use --force to replace it")
        if not output.expanduser().parent.is_dir():  # said before anything is fetched
            raise OSError(errno.ENOENT, "no such directory", str(output.expanduser().parent))
        _report, entry = _find(profile, report_id, name)
        local = local_copy(profile, entry)  # a carried photo opens with no server
        with nullcontext(None) if local is not None else _transport(profile) as transport:
            size = download_attachment(
                transport, profile.org_path, entry, output, quiet=as_json, local=local
            )
        data = {
            "name": entry.name,
            "size": size,
            "sha256": entry.sha256.hex(),
            "output": str(output),
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Wrote {shown(entry.name)} ({plural(size, 'byte')}, verified).",
                highlight=False,
            ),
        )


@attachments_app.command("list")
def list_command(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """A report's attachments with size and upload state on the server (coordinators);
    with no server, the states the last sync saw (``carried``: a verified sealed copy from
    a carried file is on this device, so it opens all the same)."""
    with _errors(as_json), _profile(home) as profile:
        view = profile.view()
        report = _resolve_report(view, profile, report_id)
        state = view.report(report)
        attachments = state.attachments if state is not None else ()
        transport = _transport(profile)
        offline = False
        try:
            states = [_server_state(transport, profile.org_path, a) for a in attachments]
        except NetworkError:
            offline = True
            states = [attachment_state(profile, a.attachment_id)["state"] for a in attachments]
        finally:
            transport.close()
        rows = [
            {"id": a.attachment_id.hex(), "name": a.name, "size": a.size,
             "media_type": a.media_type, "state": server_state,
             "on_this_device": local_copy(profile, a) is not None}
            for a, server_state in zip(attachments, states, strict=True)
        ]  # fmt: skip

        def human() -> None:
            for row in rows:
                typer.echo(
                    f"{safe(row['name'])}\t{plural(int(str(row['size'])), 'byte')}"
                    f"\t{safe(row['media_type'])}\t{safe(row['state'])}"
                )

        if offline:
            err.print(
                "The server cannot be reached: these are the states the last sync saw.",
                highlight=False,
            )
        _out(as_json, {"attachments": rows, "offline": offline}, human)


def _server_state(transport: Transport, org_path: str, entry: AttachmentManifest) -> str:
    r = transport.send(
        Request("GET", f"{org_path}/attachments/{b64encode(entry.attachment_id)}",
                max_answer_bytes=1024 * 1024)
    )  # fmt: skip
    # Not declared yet (404) is pending too: the device has not started.
    return decode(r, UploadStatus, what="attachment").state if r.status == 200 else "pending"


@attachments_app.command("queued")
def queued_command(
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Attachments on this device still waiting to be uploaded (no network needed)."""
    with _errors(as_json), _profile(home) as profile:
        rows = [
            {
                "id": p.attachment_id.hex(),
                "name": p.name,
                "sealed_bytes": p.manifest.total_size,
                "sealed_copy_present": (Path(profile.home) / SEALED_DIR / p.sealed_file).is_file(),
            }
            for p in pending_uploads(profile.store)
        ]

        def human() -> None:
            for row in rows:
                typer.echo(
                    f"{safe(row['name'])}\t{plural(int(str(row['sealed_bytes'])), 'byte')} sealed"
                )
            err.print(f"{plural(len(rows), 'attachment')} queued.")

        _out(as_json, {"queued": rows}, human)


@attachments_app.command("policy")
def policy_command(
    keep_sealed: Annotated[
        bool | None,
        typer.Option(
            "--keep-sealed/--purge-sealed",
            help="Keep the sealed copy after the server has the whole attachment (default:"
            " purge it).",
        ),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Show or set what happens to a sealed copy once it is uploaded."""
    with _errors(as_json), _profile(home) as profile:
        if keep_sealed is not None:
            profile.meta["keep_sealed_attachments"] = keep_sealed
            profile.save_meta()
        data = {"keep_sealed_attachments": bool(profile.meta.get("keep_sealed_attachments"))}
        _out(
            as_json,
            data,
            lambda: err.print(
                "Sealed copies are kept after upload."
                if data["keep_sealed_attachments"]
                else "Sealed copies are deleted once the server has the whole attachment."
            ),
        )


@attachments_app.command("upload")
def upload_command(
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Upload queued attachments now (``sealbox sync`` does this after pushing reports)."""
    with _errors(as_json), _profile(home) as profile:
        transport = _transport(profile)
        try:
            summary = upload_pending(profile, transport, quiet=as_json)
        finally:
            summary_bytes = transport.bytes_sent
            transport.close()
        summary["bytes_sent"] = summary_bytes
        _out(
            as_json,
            summary,
            lambda: err.print(f"{plural(summary['attachments_uploaded'], 'attachment')} uploaded."),
        )
        if summary.get("attachments_failed"):
            for reason in summary.get("attachments_errors", []):
                err.print(f"[bold red]error:[/] {shown(reason)}", highlight=False)
            raise typer.Exit(6)
