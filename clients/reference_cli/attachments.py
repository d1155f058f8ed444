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
* ``sealbox attachments get REPORT NAME -o FILE`` (coordinators) fetches the chunks in
  order (prefetching a few) and verifies each with the AEAD before its plaintext is
  written to a temporary file next to FILE; the file is renamed into place only after the
  whole stream, the manifest and the plaintext SHA-256 verified.  On any failure the
  partial output is deleted and the error names the attachment.
"""

from __future__ import annotations

import errno
import hashlib
import mimetypes
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from clients.reference_cli.common import (
    Exit,
    _errors,
    _out,
    _profile,
    _resolve_report,
    _transport,
    err,
)
from clients.reference_cli.render import safe
from clients.reference_cli.transport import Transport
from crypto import VerificationFailed
from crypto.stream import CHUNK_SIZE, ManifestHasher, new_attachment_key, open_chunks
from crypto.stream import seal_chunks as _seal_chunks
from sync.attachments import SealedTransfer, UploadStatus, chunk_offset
from sync.client import AttachmentFailed as UploadFailed
from sync.client import (
    AttachmentProgress,
    AttachmentStatesSeen,
    AttachmentUploaded,
    Event,
    PendingUpload,
    Request,
    Response,
    attachment_states_flow,
    decode,
    drive,
    upload_all_flow,
)
from sync.client.upload import IN_FLIGHT
from sync.messages import b64encode
from sync.report import AttachmentManifest

__all__ = [
    "AttachmentFailed",
    "UploadEvents",
    "attachment_state",
    "attachments_app",
    "download_attachment",
    "pending_uploads",
    "read_sealed_chunk",
    "refresh_attachment_states",
    "seal_file",
    "seal_for_report",
    "upload_pending",
]

PENDING_KIND = "attachment-upload"
STATE_KIND = "attachment-state"
SEALED_DIR = "attachments"


class AttachmentFailed(Exit):
    """An attachment could not be uploaded or downloaded and verified (the message names it).

    Exit status 6 in every command (`clients.reference_cli.common._errors`)."""

    def __init__(self, message: str) -> None:
        super().__init__(6, message)


class _HashingReader:
    """Reads a file in pieces, hashing the plaintext as it goes (one pass)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int, /) -> bytes:
        data = self.handle.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_file(
    source: Path, directory: Path, *, chunk_size: int = CHUNK_SIZE
) -> tuple[AttachmentManifest, PendingUpload]:
    """Seal ``source`` into ``directory`` (streamed); the report entry and the upload record."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, attachment_id = new_attachment_key(), secrets.token_bytes(16)
    sealed_name = f"{secrets.token_hex(16)}.sealed"
    target = directory / sealed_name
    hasher = ManifestHasher(chunk_size)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with source.open("rb") as handle, os.fdopen(fd, "wb") as out:
            reader = _HashingReader(handle)
            for chunk in _seal_chunks(key, attachment_id, reader, chunk_size=chunk_size):
                hasher.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    manifest = hasher.finish()
    name = source.name[:255] or "attachment"
    media = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    entry = AttachmentManifest(
        attachment_id,
        name,
        reader.size,
        reader.sha256.digest(),
        media[:255],
        SealedTransfer(key, manifest),
    )
    return entry, PendingUpload(attachment_id, name, manifest, sealed_name)


def seal_for_report(
    profile: Any, source: Path, *, chunk_size: int = CHUNK_SIZE, notify: bool = True
) -> Any:
    """``--attach FILE``: seal the file and queue its upload; the report's manifest entry."""
    if not source.is_file():
        raise AttachmentFailed(f"cannot attach {source.name!r}: not a readable file")
    entry, pending = seal_file(source, Path(profile.home) / SEALED_DIR, chunk_size=chunk_size)
    profile.store.put_cbor(PENDING_KIND, pending.attachment_id.hex(), pending.to_cbor())
    if notify:
        # Never silent about plaintext left behind: the tool made no copy, but it cannot
        # delete the user's file (or the gallery's, or a backup's) for them.
        err.print(
            f"note: {source.name} was sealed for upload; the original file is still on this"
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
    length = pending.plan().transfer.chunk_length(index)
    with sealed.open("rb") as handle:
        handle.seek(chunk_offset(index, pending.manifest.chunk_size))
        data = handle.read(length)
    if len(data) != length:
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
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=quiet,
    ) as progress:
        events = UploadEvents(profile, progress)
        flow = upload_all_flow(
            pending_uploads(profile.store),
            org_path=profile.org_path,
            read_chunk=lambda p, i: read_sealed_chunk(profile, p, i),
        )
        drive(flow, transport.send, lambda e: events(e, summary), send_many=transport.send_many)
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
    """What the last sync said of one attachment: state (pending until seen complete)."""
    record = profile.store.get_cbor(STATE_KIND, attachment_id.hex())
    if not record:
        return {"state": "pending", "received_bytes": 0}
    return {"state": record["s"], "received_bytes": record["r"]}


# --- download -------------------------------------------------------------------------------------


def _fetch_chunks(
    transport: Transport, base: str, name: str, count: int, advance: Callable[[int], None]
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
                    if problem.get("reason") in ("attachment_pending", "unknown_upload"):
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


def download_attachment(
    transport: Transport,
    org_path: str,
    entry: AttachmentManifest,
    output: Path,
    *,
    quiet: bool = False,
) -> int:
    """Fetch, verify and write one attachment to ``output``; its size in bytes."""
    transfer = entry.transfer
    if transfer is None:
        raise AttachmentFailed(f"attachment {entry.name!r} has no sealed transfer entry")
    m = transfer.manifest
    base = f"{org_path}/attachments/{b64encode(entry.attachment_id)}"
    output = output.expanduser()
    tmp = output.with_name(f".{output.name}.{secrets.token_hex(6)}.partial")
    written = 0
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=quiet,
        transient=False,
    ) as progress:
        task = progress.add_task(f"Fetching {entry.name}", total=m.total_size)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            plain = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                chunks = _fetch_chunks(
                    transport, base, entry.name, m.chunk_count, lambda n: progress.advance(task, n)
                )
                try:
                    for piece in open_chunks(
                        transfer.key, entry.attachment_id, chunks, chunk_size=m.chunk_size,
                        expected=m,
                    ):  # fmt: skip
                        plain.update(piece)
                        out.write(piece)
                        written += len(piece)
                except VerificationFailed:
                    raise AttachmentFailed(
                        f"attachment {entry.name!r} failed verification: the chunks the server"
                        " sent are not the ones sealed (tampered, reordered or truncated);"
                        " nothing was kept"
                    ) from None
                if written != entry.size or plain.digest() != entry.sha256:
                    raise AttachmentFailed(
                        f"attachment {entry.name!r} does not match the report's hash; nothing kept"
                    )
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
    home: Annotated[Path | None, typer.Option("--home", help="Profile directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Download an attachment, verifying every chunk before it is written."""
    from sync.roster import Role

    with _errors(as_json), _profile(home) as profile:
        if profile.role is not Role.COORDINATOR:
            raise Exit(1, "only coordinators can download attachments")
        if output.exists() and not force:
            raise Exit(1, f"{output} exists; use --force to replace it")
        _report, entry = _find(profile, report_id, name)
        transport = _transport(profile)
        try:
            size = download_attachment(transport, profile.org_path, entry, output, quiet=as_json)
        finally:
            transport.close()
        data = {
            "name": entry.name,
            "size": size,
            "sha256": entry.sha256.hex(),
            "output": str(output),
        }
        _out(as_json, data, lambda: err.print(f"Wrote {entry.name} ({size} bytes, verified)."))


@attachments_app.command("list")
def list_command(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    home: Annotated[Path | None, typer.Option("--home", help="Profile directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A report's attachments with size and upload state on the server (coordinators)."""
    with _errors(as_json), _profile(home) as profile:
        view = profile.view()
        report = _resolve_report(view, profile, report_id)
        state = view.report(report)
        transport = _transport(profile)
        rows = []
        try:
            for a in state.attachments if state is not None else ():
                path = f"{profile.org_path}/attachments/{b64encode(a.attachment_id)}"
                r = transport.send(Request("GET", path, max_answer_bytes=1024 * 1024))
                # Not declared yet (404) is pending too: the device has not started.
                server_state = (
                    decode(r, UploadStatus, what="attachment").state
                    if r.status == 200
                    else "pending"
                )
                rows.append(
                    {"id": a.attachment_id.hex(), "name": a.name, "size": a.size,
                     "media_type": a.media_type, "state": server_state}
                )  # fmt: skip
        finally:
            transport.close()

        def human() -> None:
            for row in rows:
                typer.echo(
                    f"{row['name']}\t{row['size']} bytes\t{row['media_type']}\t{row['state']}"
                )

        _out(as_json, {"attachments": rows}, human)


@attachments_app.command("queued")
def queued_command(
    home: Annotated[Path | None, typer.Option("--home", help="Profile directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
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
                typer.echo(f"{row['name']}\t{row['sealed_bytes']} bytes sealed")
            err.print(f"{len(rows)} attachments queued.")

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
    home: Annotated[Path | None, typer.Option("--home", help="Profile directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
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
    home: Annotated[Path | None, typer.Option("--home", help="Profile directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
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
            lambda: err.print(f"{summary['attachments_uploaded']} attachments uploaded."),
        )
        if summary.get("attachments_failed"):
            for reason in summary.get("attachments_errors", []):
                err.print(f"[bold red]error:[/] {safe(reason)}", highlight=False)
            raise typer.Exit(6)
