"""Generate the carried-file vectors: carried_v1.json (PROTOCOL §23).

Run from the repository root:  .venv/bin/python tests/vectors/generate_carried.py

Same conventions as generate.py (whose `fixed` labels and `write` layout it reuses): the
envelopes are the committed revision envelopes of envelope_v1.json (one device, one
organisation) and one sealed from fixed parts for another organisation, so re-running
rewrites identical files; the tests never run this script, they compare the code against
the committed file (tests/sync/test_carry.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from generate import HERE, fixed, main, write

from crypto import MessageKey, Purpose, SigningKey, digest, parse_envelope
from crypto.envelope import _seal_revision_from_parts
from crypto.stream import Manifest
from sync.attachments import SealedTransfer
from sync.carry import judge, magic, read_carried, write_carried
from sync.carry_attachments import judge_attachments
from sync.report import AttachmentManifest

SECTION = "§2.2, §13.3, §23.1, §23.2, §23.4"


def attachment() -> tuple[AttachmentManifest, list[bytes]]:
    """The 300-byte, five-chunk attachment of stream_v1.json, as a revision names it."""
    v = json.loads((HERE / "stream_v1.json").read_text(encoding="utf-8"))["vectors"][4]
    chunks = [bytes.fromhex(c) for c in v["chunks"]]
    plaintext = bytes.fromhex(v["plaintext"])
    manifest = Manifest(
        v["chunk_size"], v["chunk_count"], v["total_size"], bytes.fromhex(v["sha256"])
    )
    entry = AttachmentManifest(
        bytes.fromhex(v["attachment_id"]),
        "photo.jpg",
        len(plaintext),
        hashlib.sha256(plaintext).digest(),
        "image/jpeg",
        SealedTransfer(bytes.fromhex(v["key"]), manifest),
    )
    return entry, chunks


def _envelopes() -> tuple[list[bytes], bytes, bytes]:
    vectors = json.loads((HERE / "envelope_v1.json").read_text(encoding="utf-8"))["vectors"]
    envelopes = [bytes.fromhex(v["envelope"]) for v in vectors]
    seed = bytes.fromhex(vectors[0]["inputs"]["signing_seed"])
    org = bytes.fromhex(vectors[0]["inputs"]["org"])
    return envelopes, seed, org


def _foreign(seed: bytes) -> bytes:
    """The same device's key, another organisation: a revision a carrier could mix in."""
    return _seal_revision_from_parts(
        org=fixed("another org", 16),
        report=fixed("another report", 16),
        parents=[],
        seq=2,
        prev=fixed("another prev"),
        roster_version=1,
        key_seq=1,
        message_key=MessageKey(fixed("another message key")),
        content=b"\xa0",
        signing_key=SigningKey(seed),
        nonce=fixed("another nonce", 12),
    ).to_bytes()


def _case(name: str, data: bytes, org: bytes, key: SigningKey) -> dict[str, Any]:
    carried = read_carried(data)
    author = {key.verify_key.key_id: (key.verify_key, None)}
    verdicts = judge(
        carried, org_id=org, author=author.get, held=lambda _: False, refuse_after_revocation=True
    )
    entry, _ = attachment()
    named = {entry.transfer.manifest.sha256: entry} if entry.transfer else {}
    attachments = judge_attachments(carried, entry=named.get, held=lambda _: False)
    return {
        "name": name,
        "file": data.hex(),
        "complete": carried.complete,
        "problems": [p.split(":", 1)[0] for p in carried.problems],
        "verdicts": [
            {
                "status": str(v.status),
                "reason": v.reason.split(":", 1)[0],
                "envelope_id": v.envelope_id.hex() if v.envelope_id else None,
            }
            for v in verdicts
        ],
        "attachments": [
            {
                "sealed_sha256": a.sealed_sha256.hex(),
                "status": str(a.status),
                "reason": a.reason.split(":", 1)[0],
            }
            for a in attachments
        ],
    }


def carried() -> None:
    envelopes, seed, org = _envelopes()
    key = SigningKey(seed)
    data = write_carried(envelopes)
    frames_end = len(magic()) + sum(5 + len(e) for e in envelopes) + 8
    whole = {
        "name": "three revisions of one device",
        "inputs": {
            "org": org.hex(),
            "author_public_key": key.verify_key.raw.hex(),
            "envelopes": [e.hex() for e in envelopes],
        },
        "unpadded_length": frames_end + 32,
        "digest": digest(Purpose.CARRIED_FILE, data[:frames_end]).hex(),
        **_case("three revisions of one device", data, org, key),
    }
    entry, chunks = attachment()
    assert entry.transfer is not None
    sealed = entry.transfer.manifest.sha256
    with_attachment = write_carried(envelopes, [(sealed, chunks)])
    other = bytes(32)  # chunks no revision names
    flipped_chunk = [*chunks[:2], bytes([chunks[2][0] ^ 1]) + chunks[2][1:], *chunks[3:]]
    second = data.index(envelopes[1])
    flipped = bytearray(data)
    flipped[second + len(envelopes[1]) - 70] ^= 0x01  # inside the second envelope's body
    end_count = bytearray(data)
    end_count[frames_end - 1] ^= 0x01  # the end's item count
    cases = [
        _case("a byte of the second envelope flipped", bytes(flipped), org, key),
        _case("cut inside the second envelope", data[: second + 100], org, key),
        _case("cut at an item boundary: no end", data[: second - 5], org, key),
        _case("the end's item count altered", bytes(end_count), org, key),
        _case(
            "another organisation's envelope mixed in",
            write_carried([envelopes[0], _foreign(seed), envelopes[2]]),
            org,
            key,
        ),
        _case("an envelope repeated", write_carried([envelopes[0], envelopes[0]]), org, key),
        _case("padding altered", data[:-1] + b"\x01", org, key),
        _case("empty", write_carried([]), org, key),
        {
            "inputs": {"sealed_sha256": sealed.hex(), "chunks": [c.hex() for c in chunks]},
            **_case("three revisions and the attachment one names", with_attachment, org, key),
        },
        _case(
            "a byte of an attachment chunk flipped",
            write_carried(envelopes, [(sealed, flipped_chunk)]),
            org,
            key,
        ),
        _case(
            "an attachment chunk left out",
            write_carried(envelopes, [(sealed, chunks[:4])]),
            org,
            key,
        ),
        _case(
            "an attachment's chunk 1 twice, with other bytes the second time",
            write_carried([], [(sealed, chunks), (sealed, [chunks[0], chunks[2]])]),
            org,
            key,
        ),
        _case("chunks no revision names", write_carried([], [(other, chunks)]), org, key),
    ]
    for e in envelopes:
        parse_envelope(e)  # the inputs are envelopes
    write(
        "carried_v1.json",
        "Carried files (the sealed sneakernet): a file of three revision envelopes of "
        "envelope_v1.json, its checksum digest and lengths, and damaged or mixed files with "
        "what a reader concludes: the file's problems (the text before ':' of each), one "
        "verdict per envelope item (status, and the reason's first word), judged for the "
        "envelopes' organisation with their author's key known and nothing held, and one "
        "verdict per attachment, judged with the manifest entry of attachment() (the "
        "five-chunk attachment of stream_v1.json, vector 4, named photo.jpg) known",
        SECTION,
        [whole, *cases],
    )


GENERATORS = {"carried": carried}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
