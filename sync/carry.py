"""Carried files: a device's sealed outbox on a USB stick, a phone or a messenger (PROTOCOL §23).

Theory of operation.  When the network is shut down, a field device writes the envelopes it
sealed and has not had receipted into one file that anyone may carry.  Every envelope is
already signed by its author (§4.4) and its body sealed to the coordinators (§4.2, §4.3), so
the file adds no secret and no signature of its own: it is framing, a tagged checksum and
§2.2 padding.  Whoever reads it (a relay device, §23.3; a coordinator, §23.4) judges every
item on its own (`judge`), so one altered, cut, repeated or foreign item is refused with its
reason and the others go on; nothing in the file is trusted because the file holds it.

Format (`write_carried`, `read_carried`):

    file    = pad(MAGIC || frame_1 .. frame_N || u32be(0) || u32be(N) || digest)   (§2.2)
    MAGIC   = "sealbox-carried" 0x00 || u8(format = 1)                             (17 bytes)
    frame_i = u32be(len(envelope_i)) || envelope_i            1 <= len <= MAX_ITEM_BYTES
    digest  = SHA-256("sealbox/v1/carried-file" || 0x00 || MAGIC || frames || u32be(0) || u32be(N))

The digest is a checksum, keyed by nothing: it tells an accident (a cut download, a damaged
stick) from a complete file, not a deliberate carrier, who can recompute it; what a carrier
can and cannot do is the envelopes' business (THREAT_MODEL §3.11).  Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from crypto import Envelope, MalformedEnvelope, Purpose, VerificationFailed, VerifyKey, digest
from crypto.envelope import parse_envelope
from crypto.padding import padded_length

__all__ = [
    "FORMAT",
    "TAG",
    "MAX_ITEM_BYTES",
    "MAX_ITEMS",
    "CarriedFile",
    "CarriedItem",
    "CarryError",
    "Judged",
    "Status",
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


MAX_ITEM_BYTES = 4 * 1024 * 1024 + 8 * 1024
"""The largest envelope any reader accepts (§4.5); a longer frame is damage."""

MAX_ITEMS = 1_000_000
"""A file names at most this many items."""

_END = b"\x00\x00\x00\x00"


class CarryError(ValueError):
    """The bytes are not a carried file at all (refused whole: there is no item to judge)."""


@dataclass(frozen=True, slots=True)
class CarriedItem:
    """One frame of the file: its bytes, and the envelope they parse to (or why not)."""

    index: int
    data: bytes
    envelope: Envelope | None
    problem: str | None = None  # "truncated" or "malformed: ..."


@dataclass(frozen=True, slots=True)
class CarriedFile:
    items: tuple[CarriedItem, ...]
    problems: tuple[str, ...]  # about the file as a whole; empty when it is complete

    @property
    def complete(self) -> bool:
        return not self.problems


def write_carried(envelopes: Iterable[bytes]) -> bytes:
    """The carried file of ``envelopes`` (each the exact bytes its author signed)."""
    frames = bytearray(magic())
    count = 0
    for data in envelopes:
        if not 1 <= len(data) <= MAX_ITEM_BYTES:
            raise ValueError("an envelope of this length cannot be carried")
        frames += len(data).to_bytes(4, "big") + data
        count += 1
    if count > MAX_ITEMS:
        raise ValueError(f"a carried file holds at most {MAX_ITEMS} items")
    frames += _END + count.to_bytes(4, "big")
    body = bytes(frames) + digest(Purpose.CARRIED_FILE, bytes(frames))
    total = padded_length(len(body))
    return body + b"\x80" + bytes(total - len(body) - 1)


def read_carried(data: bytes) -> CarriedFile:
    """Every item the file holds, in order, and what is wrong with the file as a whole.

    Reads as far as the framing allows: a file cut short, or damaged in a length, still
    yields the items before the damage.  Raises `CarryError` only for bytes that do not
    start as a carried file."""
    if not data.startswith(magic()):
        raise CarryError("not a Sealbox carried file (format 1)")
    items: list[CarriedItem] = []
    problems: list[str] = []
    pos = len(magic())
    while True:
        if pos + 4 > len(data):
            problems.append("cut: the file ends before its last item and its end")
            return CarriedFile(tuple(items), tuple(problems))
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length == 0:
            break
        if length > MAX_ITEM_BYTES or len(items) >= MAX_ITEMS:
            problems.append(
                f"damaged: the item at byte {pos} has an impossible length;"
                " nothing after it can be read"
            )
            return CarriedFile(tuple(items), tuple(problems))
        raw = data[pos + 4 : pos + 4 + length]
        if len(raw) < length:
            items.append(CarriedItem(len(items), raw, None, "truncated"))
            problems.append("cut: the file ends inside an item")
            return CarriedFile(tuple(items), tuple(problems))
        items.append(_item(len(items), raw))
        pos += 4 + length
    end = pos + 8 + 32
    if end > len(data):
        problems.append("cut: the file's end is missing")
        return CarriedFile(tuple(items), tuple(problems))
    count = int.from_bytes(data[pos + 4 : pos + 8], "big")
    if count != len(items):
        problems.append(
            f"count: the file's end names {count} items but it holds {len(items)} (altered)"
        )
    if digest(Purpose.CARRIED_FILE, data[: pos + 8]) != data[pos + 8 : end]:
        problems.append("checksum: the file's checksum does not match its bytes (altered)")
    if data[end:] != b"\x80" + bytes(padded_length(end) - end - 1):
        problems.append("padding: the bytes after the file's end are not its padding (altered)")
    return CarriedFile(tuple(items), tuple(problems))


def _item(index: int, raw: bytes) -> CarriedItem:
    try:
        return CarriedItem(index, raw, parse_envelope(raw))
    except MalformedEnvelope as exc:
        return CarriedItem(index, raw, None, f"malformed: {exc.reason}")


class Status(StrEnum):
    ACCEPTED = "accepted"  # verified here: its author's signature, this organisation
    UNVOUCHED = "unvouched"  # its author is not known here yet: kept, judged later
    DUPLICATE = "duplicate"  # already held (an earlier import, the feed, the outbox)
    REFUSED = "refused"  # never used: ``reason`` says why


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
