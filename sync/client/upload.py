"""Resumable attachment uploads and upload states, as flows (PROTOCOL §13.4, §13.5).

Rules:
* Declare the upload (idempotent), ask which chunks the server holds, send the rest
  (at most ``in_flight`` at once, as one `Concurrent` step), then complete.  Killed at
  any point, the next sync resumes from the server's status.  Every status the server
  answers is checked against the manifest before it is believed.
* A failed upload stays queued (`AttachmentFailed`), the others go on; a report never
  waits for its media: uploads run after the push.
* The sealed chunks come from ``read_chunk`` (storage is the caller's), never the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crypto.stream import Manifest
from sync.attachments import (
    AttachmentError,
    SealedTransfer,
    UploadList,
    UploadPlan,
    UploadStatus,
)
from sync.client.events import (
    AttachmentFailed,
    AttachmentProgress,
    AttachmentStatesSeen,
    AttachmentUploaded,
)
from sync.client.flow import Flow, Request, Response, ServerMisbehaved, SyncRefused, decode, expect
from sync.messages import b64encode

__all__ = [
    "IN_FLIGHT",
    "PendingUpload",
    "attachment_states_flow",
    "upload_all_flow",
    "upload_flow",
]

IN_FLIGHT = 4
"""Chunks in flight per attachment: overlaps the server's fsyncs; memory stays bounded by
``IN_FLIGHT`` chunks whatever the file size."""
_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A queued upload: what the device needs to send a sealed copy (never the key)."""

    attachment_id: bytes
    name: str
    manifest: Manifest
    sealed_file: str

    def to_cbor(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "i": self.attachment_id,
            "n": self.name,
            "f": self.sealed_file,
            "z": m.chunk_size,
            "c": m.chunk_count,
            "t": m.total_size,
            "h": m.sha256,
        }

    @classmethod
    def from_cbor(cls, raw: Any) -> PendingUpload:
        m = Manifest(raw["z"], raw["c"], raw["t"], bytes(raw["h"]))
        return cls(bytes(raw["i"]), str(raw["n"]), m, str(raw["f"]))

    def plan(self) -> UploadPlan:
        # The plan checks geometry only; a placeholder key stands in for the one we dropped.
        return UploadPlan(self.attachment_id, SealedTransfer(bytes(32), self.manifest))


def _status(response: Response, plan: UploadPlan, name: str) -> UploadStatus:
    status = decode(response, UploadStatus, what=f"attachment {name!r}")
    try:
        plan.check_status(status)
    except AttachmentError as exc:
        raise ServerMisbehaved(f"attachment {name!r}: {exc}") from None
    return status


def upload_flow(
    pending: PendingUpload,
    *,
    org_path: str,
    read_chunk: Callable[[PendingUpload, int], bytes],
    in_flight: int = IN_FLIGHT,
) -> Flow[UploadStatus]:
    """Upload one attachment to completion; yields progress, then `AttachmentUploaded`.

    Raises:
        SyncRefused: the server refused the upload or a chunk (it stays queued).
        ServerMisbehaved: a status that does not match the manifest.
    """
    plan = pending.plan()
    base = f"{org_path}/attachments/{b64encode(pending.attachment_id)}"
    created = yield Request(
        "POST", f"{org_path}/attachments", plan.create_request().model_dump(mode="json")
    )
    status = _status(expect(created, 200, 201), plan, pending.name)
    total = pending.manifest.total_size
    for _round in range(_ROUNDS):
        if status.state == "complete":  # done before a crash kept us from forgetting it
            yield AttachmentUploaded(pending.attachment_id)
            return status
        remaining = plan.remaining(status.received)
        done = total - plan.remaining_bytes(status.received)
        yield AttachmentProgress(pending.attachment_id, done, total)
        for start in range(0, len(remaining), max(1, in_flight)):
            group = remaining[start : start + max(1, in_flight)]
            chunks = [read_chunk(pending, index) for index in group]
            requests = tuple(
                Request(
                    "PUT",
                    f"{base}/chunks/{index}",
                    query={"sha256": b64encode(hashlib.sha256(chunk).digest())},
                    content=chunk,
                    content_type="application/octet-stream",
                    max_answer_bytes=64 * 1024,
                )
                for index, chunk in zip(group, chunks, strict=True)
            )
            answers = yield requests
            if not isinstance(answers, tuple) or len(answers) != len(requests):
                raise TypeError("the driver must answer a Concurrent step with its responses")
            for answer in answers:
                expect(answer, 200, 201)
            done += sum(len(c) for c in chunks)
            yield AttachmentProgress(pending.attachment_id, done, total)
        finished = yield Request(
            "POST", f"{base}/complete", plan.complete_request().model_dump(mode="json")
        )
        if not isinstance(finished, Response):
            raise TypeError("the driver must send a Response back for a Request")
        if finished.status == 200:
            status = _status(finished, plan, pending.name)
            continue
        if finished.status != 409 or finished.problem().get("reason") != "upload_incomplete":
            expect(finished, 200)
        # The server lost or rejected some chunks: ask again and send what is missing.
        status = _status(expect((yield Request("GET", base)), 200), plan, pending.name)
    if status.state == "complete":
        yield AttachmentUploaded(pending.attachment_id)
        return status
    raise ServerMisbehaved(f"attachment {pending.name!r}: the server keeps losing chunks")


def attachment_states_flow(*, org_path: str, page_size: int = 1000) -> Flow[int]:
    """Coordinators: every upload's state, one `AttachmentStatesSeen` per page; the count."""
    after, seen = "", 0
    while True:
        query = {"limit": str(page_size)} | ({"after": after} if after else {})
        response = yield Request(
            "GET", f"{org_path}/attachments", query=query, max_answer_bytes=16 * 1024 * 1024
        )
        if isinstance(response, Response) and response.status != 200:
            return seen  # an older server or a refusal: states stay as last seen
        page = decode(expect(response, 200), UploadList, what="attachment list")
        if len(page.uploads) > page_size:
            raise ServerMisbehaved("attachment list: more uploads than asked for")
        yield AttachmentStatesSeen(tuple(page.uploads))
        seen += len(page.uploads)
        if not page.more or not page.uploads:
            return seen
        after = b64encode(page.uploads[-1].upload_id)


def upload_all_flow(
    uploads: Sequence[PendingUpload],
    *,
    org_path: str,
    read_chunk: Callable[[PendingUpload, int], bytes],
) -> Flow[tuple[int, int]]:
    """Upload each queued attachment; a failed one is reported and stays queued.

    Returns (uploaded, failed).
    """
    done = failed = 0
    for pending in uploads:
        try:
            yield from upload_flow(pending, org_path=org_path, read_chunk=read_chunk)
            done += 1
        except (SyncRefused, ServerMisbehaved, AttachmentError, OSError) as exc:
            failed += 1
            yield AttachmentFailed(pending.attachment_id, pending.name, _reason(exc))
    return done, failed


def _reason(exc: Exception) -> str:
    if isinstance(exc, SyncRefused):
        return f"refused by the server ({exc.status} {exc.code or 'error'}: {exc.detail})"
    if isinstance(exc, OSError):
        return f"the local sealed copy cannot be read ({exc.strerror or type(exc).__name__})"
    return str(exc)
