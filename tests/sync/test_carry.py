"""The carried file (PROTOCOL §23.1, §23.2): framing, checksum, padding, item-by-item verdicts.

A carried file is handed to strangers, so every test here is the carrier's move: flip any
byte, cut anywhere, repeat an item, mix in another organisation's, and the reader must keep
every genuine item, refuse the rest with its reason, and never call a damaged file whole.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from dataclasses import replace
from pathlib import Path

import pytest

from crypto import Purpose, SigningKey, VerifyKey, digest
from crypto.padding import padded_length
from crypto.stream import Manifest
from sync.attachments import SealedTransfer
from sync.carry import (
    MAX_FRAME_BYTES,
    CarriedFile,
    CarryError,
    Status,
    judge,
    magic,
    read_carried,
    write_carried,
)
from sync.carry_attachments import attachments_of, judge_attachments
from sync.report import AttachmentManifest

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "carried_v1.json").read_text("utf-8")
)["vectors"]
WHOLE = VECTORS[0]
ENVELOPES = [bytes.fromhex(e) for e in WHOLE["inputs"]["envelopes"]]
ORG = bytes.fromhex(WHOLE["inputs"]["org"])
AUTHOR = VerifyKey(bytes.fromhex(WHOLE["inputs"]["author_public_key"]))


STREAM = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "stream_v1.json").read_text("utf-8")
)["vectors"][4]
CHUNKS = [bytes.fromhex(c) for c in STREAM["chunks"]]
PHOTO = AttachmentManifest(  # as the vectors' attachment() names it: five chunks, 300 bytes
    bytes.fromhex(STREAM["attachment_id"]),
    "photo.jpg",
    len(bytes.fromhex(STREAM["plaintext"])),
    hashlib.sha256(bytes.fromhex(STREAM["plaintext"])).digest(),
    "image/jpeg",
    SealedTransfer(
        bytes.fromhex(STREAM["key"]),
        Manifest(
            STREAM["chunk_size"],
            STREAM["chunk_count"],
            STREAM["total_size"],
            bytes.fromhex(STREAM["sha256"]),
        ),
    ),
)
SEALED = bytes.fromhex(STREAM["sha256"])


def _judge_attachments(carried: CarriedFile, held=frozenset()):
    return judge_attachments(
        carried, entry={SEALED: PHOTO}.get, held=lambda e: e.attachment_id in held
    )


def _judge(carried: CarriedFile, *, revoked_after: int | None = None, held=frozenset(), relay=True):
    authors = {AUTHOR.key_id: (AUTHOR, revoked_after)}
    return judge(
        carried,
        org_id=ORG,
        author=authors.get,
        held=lambda i: i in held,
        refuse_after_revocation=relay,
    )


def test_the_writer_reproduces_the_vector_byte_for_byte() -> None:
    """PROTOCOL §23.1: MAGIC, frames, end, count, tagged digest, §2.2 padding."""
    data = write_carried(ENVELOPES)
    assert data.hex() == WHOLE["file"]
    body = magic() + b"".join((1 + len(e)).to_bytes(4, "big") + b"\x01" + e for e in ENVELOPES)
    body += bytes(4) + len(ENVELOPES).to_bytes(4, "big")
    assert digest(Purpose.CARRIED_FILE, body).hex() == WHOLE["digest"]
    assert len(body) + 32 == WHOLE["unpadded_length"]
    # Nothing but the envelopes and the framing: no id, count or name in clear beyond them.
    padded = body + bytes.fromhex(WHOLE["digest"]) + b"\x80"
    assert data == padded + bytes(len(data) - len(padded))
    assert len(data) == padded_length(WHOLE["unpadded_length"])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_readers_conclude_what_the_vectors_record(vector: dict) -> None:
    """PROTOCOL §23.2: the file's problems and one verdict per item, for each damage."""
    carried = read_carried(bytes.fromhex(vector["file"]))
    assert carried.complete is vector["complete"]
    assert [p.split(":", 1)[0] for p in carried.problems] == vector["problems"]
    verdicts = _judge(carried)
    assert [
        {
            "status": str(v.status),
            "reason": v.reason.split(":", 1)[0],
            "envelope_id": v.envelope_id.hex() if v.envelope_id else None,
        }
        for v in verdicts
    ] == vector["verdicts"]
    assert [
        {
            "sealed_sha256": a.sealed_sha256.hex(),
            "status": str(a.status),
            "reason": a.reason.split(":", 1)[0],
        }
        for a in _judge_attachments(carried)
    ] == vector["attachments"]


def test_any_flipped_byte_keeps_every_genuine_item_and_no_altered_one() -> None:
    """PROTOCOL §23.2: whichever byte a carrier flips, the file is not whole, no accepted
    item differs from what its author signed, and the untouched items are still accepted.
    (A flip in the device id names an author the reader does not know: that item is only
    ever ``unvouched``, which the server refuses and a coordinator never shows.)"""
    data = write_carried(ENVELOPES)
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x40
        try:
            carried = read_carried(bytes(flipped))
        except CarryError:
            assert i < len(magic())
            continue
        assert not carried.complete, i
        verdicts = _judge(carried)
        accepted = [v.data for v in verdicts if v.status is Status.ACCEPTED]
        assert set(accepted) <= set(ENVELOPES), i
        for v in verdicts:
            if v.usable and v.data not in ENVELOPES:
                assert v.status is Status.UNVOUCHED, i
                envelope = read_carried(write_carried([v.data])).items[0].envelope
                assert envelope is not None and envelope.header.device != AUTHOR.key_id, i
        offset = len(magic())
        for envelope in ENVELOPES:  # an item before the flipped byte is never lost
            if offset + 5 + len(envelope) <= i:
                assert envelope in accepted, i
            offset += 5 + len(envelope)


def test_a_cut_anywhere_keeps_the_items_before_it_and_says_the_file_was_cut() -> None:
    """PROTOCOL §23.2: truncation loses at most the cut item, and never silently."""
    data = write_carried(ENVELOPES)
    unpadded = WHOLE["unpadded_length"]
    for n in range(len(magic()), unpadded):
        carried = read_carried(data[:n])
        assert not carried.complete and any(p.startswith("cut") for p in carried.problems), n
        accepted = [v.data for v in _judge(carried) if v.usable]
        assert accepted == ENVELOPES[: len(accepted)], n
    # Cut in the padding: the items are all there, the padding is not.
    carried = read_carried(data[: unpadded + 1])
    assert [p.split(":")[0] for p in carried.problems] == ["padding"]


def test_what_a_reader_holds_is_a_duplicate_and_an_unknown_author_is_unvouched() -> None:
    """PROTOCOL §23.2: a replayed file changes nothing; an author the reader cannot check is
    kept for the server or a coordinator who can (never accepted on the file's word)."""
    carried = read_carried(write_carried(ENVELOPES))
    held = {v.envelope_id for v in _judge(carried)[:2]}
    assert [v.status for v in _judge(carried, held=held)] == [
        Status.DUPLICATE,
        Status.DUPLICATE,
        Status.ACCEPTED,
    ]
    stranger = judge(
        carried,
        org_id=ORG,
        author=lambda _: None,
        held=lambda _: False,
        refuse_after_revocation=True,
    )
    assert {v.status for v in stranger} == {Status.UNVOUCHED}
    impostor = SigningKey.generate().verify_key
    forged = judge(
        carried,
        org_id=ORG,
        author=lambda _: (impostor, None),
        held=lambda _: False,
        refuse_after_revocation=True,
    )
    assert {v.status for v in forged} == {Status.REFUSED}
    assert all(v.reason.startswith("forged") for v in forged)
    elsewhere = judge(
        carried,
        org_id=bytes(16),
        author=lambda _: (AUTHOR, None),
        held=lambda _: False,
        refuse_after_revocation=True,
    )
    assert all(v.reason.startswith("foreign") for v in elsewhere)


def test_a_mis_signed_copy_first_does_not_shadow_the_genuine_envelope() -> None:
    """PROTOCOL §23.2: the envelope id does not cover the signature, so a carrier can put a
    copy with a bad signature before the genuine one: the copy is refused, the genuine one
    (same id) is still accepted, and a second genuine copy is the repeat."""
    genuine = read_carried(write_carried([ENVELOPES[0]])).items[0].envelope
    assert genuine is not None
    bad = replace(genuine, signature=bytes(64)).to_bytes()
    carried = read_carried(write_carried([bad, ENVELOPES[0], ENVELOPES[0]]))
    verdicts = _judge(carried)
    assert [v.status for v in verdicts] == [Status.REFUSED, Status.ACCEPTED, Status.REFUSED]
    assert verdicts[0].reason.startswith("forged") and verdicts[2].reason.startswith("repeated")
    assert verdicts[1].data == ENVELOPES[0]


def test_after_revocation_a_relay_refuses_and_a_coordinator_keeps_it_for_the_view() -> None:
    """PROTOCOL §23.3, §23.4: a relay refuses what the server would (§8.3 D3); a coordinator
    takes it in so that its view flags it, exactly as from the feed (§4.5 item 3)."""
    carried = read_carried(write_carried(ENVELOPES))  # device seqs 2, 3 and 7
    relay = _judge(carried, revoked_after=3)
    assert [v.status for v in relay] == [Status.ACCEPTED, Status.ACCEPTED, Status.REFUSED]
    assert relay[2].reason.startswith("revoked")
    coordinator = _judge(carried, revoked_after=3, relay=False)
    assert {v.status for v in coordinator} == {Status.ACCEPTED}


def test_the_padded_length_hides_the_exact_sizes() -> None:
    """PROTOCOL §23.1: the file's length is a Padmé bucket (§2.2) of its framed length."""
    lengths = set()
    for extra in range(0, 40):
        data = write_carried([*ENVELOPES, bytes(60 + extra)])
        lengths.add(len(data))
        assert len(data) == padded_length(len(data.rstrip(b"\x00")) - 1)
    assert len(lengths) <= 2  # 40 different sizes, one or two buckets


def test_impossible_lengths_are_damage_not_allocation() -> None:
    """A frame longer than any envelope stops the reading there (the items before stay)."""
    data = magic() + (MAX_FRAME_BYTES + 1).to_bytes(4, "big") + bytes(16)
    carried = read_carried(data)
    assert carried.items == () and carried.problems[0].startswith("damaged")
    with pytest.raises(ValueError):
        write_carried([b""])
    with pytest.raises(CarryError):
        read_carried(b"sealbox-carried\x00\x02" + bytes(300))  # another format


def test_an_attachment_travels_as_its_sealed_chunks_named_by_their_hash_only() -> None:
    """PROTOCOL §23.1: a chunk frame is kind 2, the sealed SHA-256, the index, the chunk;
    the attachment id (which would let a carrier claim the upload) is nowhere in the file."""
    data = write_carried(ENVELOPES, [(SEALED, CHUNKS)])
    assert PHOTO.attachment_id not in data and PHOTO.transfer is not None
    assert PHOTO.transfer.key not in data
    frame = (1 + 32 + 4 + len(CHUNKS[0])).to_bytes(4, "big") + b"\x02" + SEALED + bytes(4)
    assert frame + CHUNKS[0] in data
    carried = read_carried(data)
    assert carried.complete and [c.chunk for c in carried.chunks] == [0, 1, 2, 3, 4]
    assert [c.index for c in carried.chunks] == [3, 4, 5, 6, 7]  # frames after the envelopes
    (verdict,) = _judge_attachments(carried)
    assert verdict.status is Status.ACCEPTED and verdict.entry == PHOTO
    assert [c.data for c in verdict.chunks] == CHUNKS
    held = _judge_attachments(carried, held={PHOTO.attachment_id})
    assert held[0].status is Status.DUPLICATE
    unknown = judge_attachments(carried, entry=lambda _: None, held=lambda _: False)
    assert unknown[0].status is Status.UNMATCHED and not unknown[0].usable


def test_any_flipped_byte_of_an_attachment_frame_keeps_it_from_being_accepted() -> None:
    """PROTOCOL §23.4: a carrier who alters any byte of the chunks' frames (length, kind,
    hash, index, ciphertext) gets the attachment refused or unmatched, never accepted."""
    data = write_carried([], [(SEALED, CHUNKS)])
    start = len(magic())
    end = start + sum(5 + 36 + len(c) for c in CHUNKS)
    for i in range(start, end):
        flipped = bytearray(data)
        flipped[i] ^= 0x20
        carried = read_carried(bytes(flipped))
        assert not carried.complete, i
        assert not any(a.usable for a in _judge_attachments(carried)), i


def test_chunks_out_of_order_are_put_back_in_order_and_a_cut_attachment_is_incomplete() -> None:
    """Frames carry the chunk index, so order in the file does not matter; a missing chunk
    anywhere refuses the attachment, and nothing of it is used."""
    shuffled = read_carried(write_carried([], [(SEALED, CHUNKS)]))
    reordered = CarriedFile(shuffled.items, (), tuple(reversed(shuffled.chunks)))
    assert _judge_attachments(reordered)[0].status is Status.ACCEPTED
    for left_out in range(len(CHUNKS)):
        chunks = [c for c in shuffled.chunks if c.chunk != left_out]
        (verdict,) = _judge_attachments(CarriedFile((), (), tuple(chunks)))
        assert verdict.status is Status.REFUSED and verdict.reason.startswith("incomplete")
    # The same chunk twice, byte for byte (a replayed part), is harmless.
    again = read_carried(write_carried([], [(SEALED, CHUNKS), (SEALED, CHUNKS[:2])]))
    assert [len(a.chunks) for a in attachments_of(again)] == [5]
    assert _judge_attachments(again)[0].status is Status.ACCEPTED


def test_a_memory_mapped_file_reads_as_its_bytes(tmp_path: Path) -> None:
    """The reader takes a memory map (a carried file of gigabytes is never read whole)."""
    data = write_carried(ENVELOPES, [(SEALED, CHUNKS)])
    path = tmp_path / "f.carried"
    path.write_bytes(data)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        mapped = read_carried(m)
        assert mapped.complete and [i.data for i in mapped.items] == ENVELOPES
        assert [c.data for c in mapped.chunks] == CHUNKS
        assert _judge_attachments(mapped)[0].status is Status.ACCEPTED
