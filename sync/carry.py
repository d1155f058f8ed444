"""Carried files: a device's sealed outbox on a USB stick, a phone or a messenger (PROTOCOL §23).

Theory of operation.  When the network is shut down, a field device writes the envelopes it
sealed and has not had receipted into one file that anyone may carry.  Every envelope is
already signed by its author (§4.4) and its body sealed to the coordinators (§4.2, §4.3), so
the file adds no secret and no signature of its own: it is framing, a tagged checksum and
§2.2 padding.  Whoever reads it (a relay device, §23.3; a coordinator, §23.4) judges every
item on its own (`judge`), so one altered, cut, repeated or foreign item is refused with its
reason and the others go on; nothing in the file is trusted because the file holds it.

Format (`carried_pieces`, `read_carried`):

    file    = pad(MAGIC || frame_1 .. frame_N || u32be(0) || u32be(N) || digest)   (§2.2)
    MAGIC   = "sealbox-carried" 0x00 || u8(format = 1)                             (17 bytes)
    frame_i = u32be(1 + len(body_i)) || u8(kind_i) || body_i
    kind 1  body = envelope                                  1 <= len <= MAX_ENVELOPE_BYTES
    kind 2  body = sealed_sha256 || u32be(i) || chunk_i      (an attachment's chunk, §13)
    digest  = SHA-256("sealbox/v1/carried-file" || 0x00 || MAGIC || frames || u32be(0) || u32be(N))

An attachment travels as its sealed chunks, named by ``sealed_sha256``: the SHA-256 of
its chunk ciphertexts (the ``"x"."h"`` of its manifest entry, §13.3), which a coordinator
finds in a revision it opened; never by its attachment id, which would let a carrier
claim the upload on the server first.  `sync.carry_attachments` judges them.

The digest is a checksum, keyed by nothing: it tells an accident (a cut download, a damaged
stick) from a complete file, not a deliberate carrier, who can recompute it; what a carrier
can and cannot do is the envelopes' business (THREAT_MODEL §3.11).  Nothing here does I/O:
the writer yields the file in pieces and the reader takes any buffer (bytes, or a memory
map of a file of gigabytes), copying out one frame at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, overload

from crypto import (
    Envelope,
    MalformedEnvelope,
    Purpose,
    VerificationFailed,
    VerifyKey,
)
from crypto.envelope import parse_envelope
from crypto.padding import padded_length
from crypto.signed import digest_hasher
from crypto.stream import MAX_CHUNK_SIZE, TAG_LENGTH

__all__ = [
    "FORMAT",
    "TAG",
    "MAX_ENVELOPE_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_ITEMS",
    "Buffer",
    "CarriedChunk",
    "CarriedFile",
    "CarriedItem",
    "CHUNK_FRAME_OVERHEAD",
    "CarryError",
    "Judged",
    "Kind",
    "Status",
    "carried_length",
    "carried_pieces",
    "judge",
    "magic",
    "read_carried",
    "write_carried",
]

TAG = b"sealbox-carried\x00"
FORMAT = 1


def magic() -> bytes:
    """The file's first 17 bytes: ``TAG || u8(FORMAT)`` ("sealbox-carried" 0x00 0x01)."""
    return TAG + bytes([FORMAT])


class Kind:
    ENVELOPE = 1
    CHUNK = 2


MAX_ENVELOPE_BYTES = 4 * 1024 * 1024 + 8 * 1024
"""The largest envelope any reader accepts (§4.5)."""

_CHUNK_HEAD = 32 + 4
MAX_FRAME_BYTES = 1 + _CHUNK_HEAD + MAX_CHUNK_SIZE + TAG_LENGTH
"""The longest frame: a chunk of the largest chunk size (§13.3); a longer one is damage."""

CHUNK_FRAME_OVERHEAD = 4 + 1 + _CHUNK_HEAD
"""What a chunk frame adds to the chunk: its length, kind, sealed SHA-256 and index."""

MAX_ITEMS = 1_000_000
"""A file holds at most this many frames."""

_END = b"\x00\x00\x00\x00"
_BLOCK = 1024 * 1024


class CarryError(ValueError):
    """The bytes are not a carried file at all (refused whole: there is no item to judge)."""


class Buffer(Protocol):
    """What the reader reads: ``bytes``, or an ``mmap`` of the file (slices are copies)."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, key: int, /) -> int: ...
    @overload
    def __getitem__(self, key: slice, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class CarriedItem:
    """An envelope frame (or an unreadable one): its bytes, and the envelope they parse to."""

    index: int  # the frame's place in the file
    data: bytes
    envelope: Envelope | None
    problem: str | None = None  # "truncated" or "malformed: ..."


@dataclass(frozen=True, slots=True, eq=False)
class CarriedChunk:
    """An attachment chunk frame; its bytes are read from the buffer when asked for."""

    index: int  # the frame's place in the file
    sealed_sha256: bytes  # which attachment: SHA-256 of all its chunk ciphertexts
    chunk: int  # its place in the attachment
    length: int
    _buffer: Buffer = field(repr=False)
    _offset: int = field(repr=False)

    @property
    def data(self) -> bytes:
        return self._buffer[self._offset : self._offset + self.length]


@dataclass(frozen=True, slots=True)
class CarriedFile:
    items: tuple[CarriedItem, ...]  # the envelope frames
    problems: tuple[str, ...]  # about the file as a whole; empty when it is complete
    chunks: tuple[CarriedChunk, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.problems


def _frame(kind: int, body: bytes) -> bytes:
    return (1 + len(body)).to_bytes(4, "big") + bytes([kind]) + body


def carried_pieces(
    envelopes: Iterable[bytes],
    attachments: Iterable[tuple[bytes, Iterable[bytes]]] = (),
) -> Iterator[bytes]:
    """The carried file of ``envelopes`` (each the exact bytes its author signed) and of
    ``attachments`` (each its sealed SHA-256 and its chunk ciphertexts in order), in pieces
    to write as they come: an export of gigabytes never sits in memory."""
    hasher = digest_hasher(Purpose.CARRIED_FILE)
    length = 0
    count = 0

    def piece(data: bytes) -> bytes:
        nonlocal length
        hasher.update(data)
        length += len(data)
        return data

    yield piece(magic())
    for data in envelopes:
        if not 1 <= len(data) <= MAX_ENVELOPE_BYTES:
            raise ValueError("an envelope of this length cannot be carried")
        count += 1
        yield piece(_frame(Kind.ENVELOPE, data))
    for sealed_sha256, chunks in attachments:
        if len(sealed_sha256) != 32:
            raise ValueError("an attachment is named by a 32-byte SHA-256")
        for i, chunk in enumerate(chunks):
            if not TAG_LENGTH < len(chunk) <= MAX_CHUNK_SIZE + TAG_LENGTH:
                raise ValueError("a chunk of this length cannot be carried")
            count += 1
            yield piece(_frame(Kind.CHUNK, sealed_sha256 + i.to_bytes(4, "big") + chunk))
    if count > MAX_ITEMS:
        raise ValueError(f"a carried file holds at most {MAX_ITEMS} items")
    yield piece(_END + count.to_bytes(4, "big"))
    end = hasher.digest()
    length += len(end)
    yield end + b"\x80" + bytes(padded_length(length) - length - 1)


def carried_length(envelopes: Iterable[bytes]) -> int:
    """The unpadded length of the file of ``envelopes`` alone (an attachment adds its sealed
    size and `CHUNK_FRAME_OVERHEAD` per chunk): what an exporter measures against a limit."""
    return len(magic()) + sum(5 + len(e) for e in envelopes) + len(_END) + 4 + 32


def write_carried(
    envelopes: Iterable[bytes], attachments: Iterable[tuple[bytes, Iterable[bytes]]] = ()
) -> bytes:
    """The whole carried file in memory (`carried_pieces` joined)."""
    return b"".join(carried_pieces(envelopes, attachments))


def read_carried(data: Buffer) -> CarriedFile:
    """Every frame the file holds, in order, and what is wrong with the file as a whole.

    Reads as far as the framing allows: a file cut short, or damaged in a length, still
    yields the items before the damage.  Raises `CarryError` only for bytes that do not
    start as a carried file."""
    if data[: len(magic())] != magic():
        raise CarryError("not a Sealbox carried file (format 1)")
    items: list[CarriedItem] = []
    chunks: list[CarriedChunk] = []
    problems: list[str] = []

    def done() -> CarriedFile:
        return CarriedFile(tuple(items), tuple(problems), tuple(chunks))

    pos = len(magic())
    size = len(data)
    frames = 0
    while True:
        if pos + 4 > size:
            problems.append("cut: the file ends before its last item and its end")
            return done()
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length == 0:
            break
        if length > MAX_FRAME_BYTES or frames >= MAX_ITEMS:
            problems.append(
                f"damaged: the item at byte {pos} has an impossible length;"
                " nothing after it can be read"
            )
            return done()
        if pos + 4 + length > size:
            items.append(CarriedItem(frames, data[pos + 5 : size], None, "truncated"))
            problems.append("cut: the file ends inside an item")
            return done()
        kind = data[pos + 4]
        body = pos + 5
        if kind == Kind.CHUNK and TAG_LENGTH < length - 1 - _CHUNK_HEAD:
            head = data[body : body + _CHUNK_HEAD]
            chunk = int.from_bytes(head[32:], "big")
            chunks.append(
                CarriedChunk(frames, head[:32], chunk, length - 1 - _CHUNK_HEAD, data,
                             body + _CHUNK_HEAD)
            )  # fmt: skip
        else:
            items.append(_item(frames, kind, data[body : pos + 4 + length]))
        frames += 1
        pos += 4 + length
    end = pos + 8 + 32
    if end > size:
        problems.append("cut: the file's end is missing")
        return done()
    count = int.from_bytes(data[pos + 4 : pos + 8], "big")
    if count != frames:
        problems.append(
            f"count: the file's end names {count} items but it holds {frames} (altered)"
        )
    if _digest(data, pos + 8) != data[pos + 8 : end]:
        problems.append("checksum: the file's checksum does not match its bytes (altered)")
    if not _is_padding(data, end):
        problems.append("padding: the bytes after the file's end are not its padding (altered)")
    return done()


def _digest(data: Buffer, stop: int) -> bytes:
    hasher = digest_hasher(Purpose.CARRIED_FILE)
    for start in range(0, stop, _BLOCK):
        hasher.update(data[start : min(start + _BLOCK, stop)])
    return hasher.digest()


def _is_padding(data: Buffer, end: int) -> bool:
    size = len(data)
    if size != padded_length(end) or data[end : end + 1] != b"\x80":
        return False
    return all(
        data[start : min(start + _BLOCK, size)].count(0) == min(start + _BLOCK, size) - start
        for start in range(end + 1, size, _BLOCK)
    )


def _item(index: int, kind: int, raw: bytes) -> CarriedItem:
    if kind == Kind.CHUNK:
        return CarriedItem(index, raw, None, "malformed: a chunk frame too short for a chunk")
    if kind != Kind.ENVELOPE:
        return CarriedItem(index, raw, None, f"malformed: an item of unknown kind {kind}")
    if not raw or len(raw) > MAX_ENVELOPE_BYTES:
        return CarriedItem(index, raw, None, "malformed: no envelope has this length")
    try:
        return CarriedItem(index, raw, parse_envelope(raw))
    except MalformedEnvelope as exc:
        return CarriedItem(index, raw, None, f"malformed: {exc.reason}")


class Status(StrEnum):
    ACCEPTED = "accepted"  # verified here: its author's signature, this organisation
    UNVOUCHED = "unvouched"  # its author is not known here yet: kept, judged later
    DUPLICATE = "duplicate"  # already held (an earlier import, the feed, the outbox)
    REFUSED = "refused"  # never used: ``reason`` says why
    UNMATCHED = "unmatched"  # an attachment no revision the reader opened names: not kept


@dataclass(frozen=True, slots=True)
class Judged:
    index: int
    envelope_id: bytes | None
    status: Status
    reason: str = ""
    data: bytes = b""

    @property
    def usable(self) -> bool:
        return self.status in (Status.ACCEPTED, Status.UNVOUCHED)


Author = Callable[[bytes], tuple[VerifyKey, int | None] | None]
"""A device id's signing key and revocation point (None: not revoked), or None if unknown."""


def judge(
    carried: CarriedFile,
    *,
    org_id: bytes,
    author: Author,
    held: Callable[[bytes], bool],
    refuse_after_revocation: bool,
) -> list[Judged]:
    """One verdict per item, in file order (PROTOCOL §23.2).

    An item is refused if it is cut or not an envelope, of another organisation, repeated
    earlier in the file, mis-signed by the author ``author`` names, or (when
    ``refuse_after_revocation``: a relay, which the server would refuse anyway, §8.3 D3)
    signed after its author's revocation point.  ``held`` says which envelope ids the reader
    already has (a duplicate changes nothing).  An author the reader does not know is
    ``unvouched``: only the server or a coordinator who knows it can decide."""
    seen: set[bytes] = set()
    out: list[Judged] = []
    for item in carried.items:
        envelope = item.envelope
        if envelope is None:
            out.append(Judged(item.index, None, Status.REFUSED, item.problem or "malformed"))
            continue
        status, reason = _verdict(envelope, org_id, author, held, seen, refuse_after_revocation)
        if status is not Status.REFUSED:  # a refused copy must not shadow a genuine one
            seen.add(envelope.id)
        out.append(Judged(item.index, envelope.id, status, reason, item.data))
    return out


def _verdict(
    envelope: Envelope,
    org_id: bytes,
    author: Author,
    held: Callable[[bytes], bool],
    seen: set[bytes],
    refuse_after_revocation: bool,
) -> tuple[Status, str]:
    h = envelope.header
    if h.org != org_id:
        return Status.REFUSED, "foreign: an envelope of another organisation"
    if envelope.id in seen:
        return Status.REFUSED, "repeated: the same envelope is earlier in this file"
    known = author(h.device)
    if known is not None:
        key, revoked_after = known
        try:
            envelope.verify_signature(key)
        except VerificationFailed:
            return Status.REFUSED, "forged: its author's signature does not verify (altered)"
        if refuse_after_revocation and revoked_after is not None and h.seq > revoked_after:
            return Status.REFUSED, "revoked: signed after its author's revocation point"
    if held(envelope.id):
        return Status.DUPLICATE, "already held"
    if known is None:
        return Status.UNVOUCHED, "its author is not known here yet: kept for who can check it"
    return Status.ACCEPTED, ""
