"""`sealbox attachments ...` commands and the verified download (PROTOCOL §13.6).

``sealbox attachments get REPORT NAME -o FILE`` (coordinators) fetches the chunks in
order (prefetching `IN_FLIGHT`) and verifies each with the AEAD before its plaintext is
written to a temporary file next to FILE; the file is renamed into place only after the
whole stream, the manifest and the plaintext SHA-256 verified.  On any failure the
partial output is deleted and the error names the attachment.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from clients.local.sealing import local_copy, sealed_chunks
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
from crypto import VerificationFailed
from crypto.stream import CHUNK_SIZE, open_chunks
from sync.attachments import UploadStatus
from sync.client import Request, Response, decode
from sync.client.upload import IN_FLIGHT
from sync.messages import b64encode
from sync.report import AttachmentManifest

__all__ = [
    "attachment_chunks",
    "attachment_plaintext",
    "attachments_app",
    "download_attachment",
    "read_attachment",
]


# --- download -------------------------------------------------------------------------------------


def _fetch_chunks(
    transport: Transport,
    base: str,
    name: str,
    count: int,
    advance: Callable[[int], None],
) -> Iterator[bytes]:
    """The chunks in order, fetched up to `IN_FLIGHT` ahead (bounded memory)."""

    def get(index: int) -> Response:
        return transport.send(
            Request(
                "GET",
                f"{base}/chunks/{index}",
                accept="application/octet-stream",
                max_answer_bytes=CHUNK_SIZE + 4096,
            )
        )

    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="download") as pool:
        window: deque[Future[Response]] = deque()
        ahead = 0
        try:
            while ahead < count and len(window) < IN_FLIGHT:
                window.append(pool.submit(get, ahead))
                ahead += 1
            for index in range(count):
                r = window.popleft().result()
                if ahead < count:
                    window.append(pool.submit(get, ahead))
                    ahead += 1
                if r.status != 200 or r.oversized:
                    problem = r.problem()
                    if problem.get("reason") in (
                        "attachment_pending",
                        "unknown_upload",
                    ):
                        raise AttachmentFailed(
                            f"attachment {name!r} is still uploading (pending); try again later"
                        )
                    detail = problem.get("detail", f"HTTP {r.status}")
                    raise AttachmentFailed(
                        f"attachment {name!r}: chunk {index} unavailable ({detail})"
                    )
                advance(len(r.content))
                yield r.content
        finally:
            pool.shutdown(cancel_futures=True)


def attachment_chunks(
    transport: Transport | None,
    org_path: str,
    entry: AttachmentManifest,
    advance: Callable[[int], None],
    *,
    local: Path | None = None,
) -> tuple[Iterator[bytes], str]:
    """The sealed chunks of ``entry``, and where they come from: ``local``, a sealed copy on
    this device (`clients.local.sealing.local_copy`: a carried file's, PROTOCOL §23.4, or
    its own awaiting upload), else the server. The reader verifies every chunk either way."""
    assert entry.transfer is not None
    m = entry.transfer.manifest
    if local is not None:

        def counted() -> Iterator[bytes]:
            for chunk in sealed_chunks(local, m):
                advance(len(chunk))
                yield chunk

        return counted(), "the sealed copy on this device"
    assert transport is not None, "no local copy: the server is needed"
    base = f"{org_path}/attachments/{b64encode(entry.attachment_id)}"
    chunks = _fetch_chunks(transport, base, entry.name, m.chunk_count, advance)
    return chunks, "the chunks the server sent"


def read_attachment(
    transport: Transport | None,
    org_path: str,
    entry: AttachmentManifest,
    write: Callable[[bytes], object],
    *,
    advance: Callable[[int], None] = lambda n: None,
    local: Path | None = None,
) -> int:
    """Verify ``entry`` chunk by chunk, from ``local`` (a sealed copy on this device) or
    else the server, handing its plaintext to ``write`` in order; its size.  On
    `AttachmentFailed` what was written must be thrown away: the last check, the
    report's size and SHA-256 of the whole, comes after the last piece."""
    transfer = entry.transfer
    if transfer is None:
        raise AttachmentFailed(f"attachment {entry.name!r} has no sealed transfer entry")
    m = transfer.manifest
    chunks, source = attachment_chunks(transport, org_path, entry, advance, local=local)
    plain, written = hashlib.sha256(), 0
    try:
        for piece in open_chunks(
            transfer.key, entry.attachment_id, chunks, chunk_size=m.chunk_size, expected=m
        ):
            plain.update(piece)
            write(piece)
            written += len(piece)
    except VerificationFailed:
        raise AttachmentFailed(
            f"attachment {entry.name!r} failed verification: {source} are not the ones"
            " sealed (tampered, reordered or truncated); nothing was kept"
        ) from None
    if written != entry.size or plain.digest() != entry.sha256:
        raise AttachmentFailed(
            f"attachment {entry.name!r} does not match the report's hash; nothing kept"
        )
    return written


def attachment_plaintext(
    transport: Transport | None, org_path: str, entry: AttachmentManifest, *,
    advance: Callable[[int], None] = lambda n: None, local: Path | None = None,
) -> bytes:  # fmt: skip
    """One attachment verified and opened in memory, never on disk (evidence bundles,
    the Desk's inline view)."""
    out = bytearray()
    read_attachment(transport, org_path, entry, out.extend, advance=advance, local=local)
    return bytes(out)


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
