"""Reading an attachment on a coordinator's device (PROTOCOL §13.6, §23.4): its sealed
chunks from a sealed copy on this device or else the server (in order, prefetching
`IN_FLIGHT`), each verified with the AEAD against the sealed manifest before its
plaintext is handed on, then the whole checked against the report's size and SHA-256.
Used by `sealbox attachments get` (to a file), evidence bundles and the Desk (in memory).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from clients.local.sealing import sealed_chunks
from clients.local.transport import Transport
from clients.reference_cli.attachments import AttachmentFailed
from crypto import VerificationFailed
from crypto.stream import CHUNK_SIZE, open_chunks
from sync.client import Request, Response
from sync.client.upload import IN_FLIGHT
from sync.messages import b64encode
from sync.report import AttachmentManifest

__all__ = ["attachment_chunks", "attachment_plaintext", "read_attachment"]


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
