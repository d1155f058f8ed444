"""Generate Sealbox's known-answer vectors (tests/vectors/*.json) from fixed inputs.

Run from the repository root:  .venv/bin/python tests/vectors/generate.py [set ...]

Every input (seeds, nonces, salts, ids) is derived from a fixed label, and the code under
test is driven through its deterministic seams (`_..._from_parts`, explicit nonce/salt/random
arguments), so re-running this script rewrites identical files, with one exception: HPKE
encapsulation is randomised (pyca offers no seam for it), so the wraps inside
`sender_key_v1.json` change on every run.  Its test opens the recorded bytes and checks the
recorded chain key comes out, and rebuilds every deterministic part (header, id, signature
over the recorded body) byte for byte.

The tests never run this script: they compare the code against the committed files, so a
change to any format shows up as a failing vector, and regenerating is a deliberate act that
belongs in the same commit as a docs/PROTOCOL.md change.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from crypto import (
    ChainKey,
    KdfParams,
    KemPrivateKey,
    Purpose,
    SigningKey,
    digest,
    message_key_at,
    parse_envelope,
    seal_sender_key,
    stream,
    wrap_keyfile,
)
from crypto.envelope import NO_WITNESS, _seal_revision_from_parts, _seal_sender_key_from_parts
from crypto.padding import pad, padded_length, padme
from sync.checkpoint import Checkpoint
from sync.invite import Enrollment, Invite, InviteCode, seal_label, secret_hash
from sync.merkle import Frontier, batch_inclusion_proof, leaf_hash
from sync.receipt import Receipt, ReceiptItem
from sync.roster import Member, Role, Roster, format_fingerprint

HERE = Path(__file__).resolve().parent
ZERO = bytes(32)


def fixed(label: str, length: int = 32) -> bytes:
    """Deterministic test bytes: SHA-256 of a label (extended with a counter if needed)."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"sealbox test vector {label} {counter}".encode()).digest()
        counter += 1
    return out[:length]


def write(name: str, description: str, section: str, vectors: list[dict[str, Any]]) -> None:
    path = HERE / name
    document = {"description": description, "protocol": section, "vectors": vectors}
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(HERE.parent.parent)} ({len(vectors)} vectors)")


# --- keys and signatures ---------------------------------------------------------------


def keys() -> None:
    vectors: list[dict[str, Any]] = []
    for n in range(3):
        seed = fixed(f"ed25519 {n}")
        key = SigningKey(seed)
        message = fixed(f"message {n}", 7 * n)
        purpose = list(Purpose)[n]
        vectors.append(
            {
                "type": "ed25519",
                "seed": seed.hex(),
                "public": key.verify_key.raw.hex(),
                "key_id": key.verify_key.key_id.hex(),
                "purpose": purpose.value.decode(),
                "message": message.hex(),
                "signature": key.sign(purpose, message).hex(),
            }
        )
    for n in range(2):
        seed = fixed(f"xwing {n}")
        kem = KemPrivateKey(seed)
        vectors.append(
            {
                "type": "mlkem768-x25519",
                "seed": seed.hex(),
                "public": kem.public_key.raw.hex(),
                "key_id": kem.public_key.key_id.hex(),
            }
        )
    write(
        "keys_v1.json",
        "Key derivation from seeds, key ids, tagged signatures",
        "§1.1, §1.2, §2",
        vectors,
    )


# --- canonical CBOR, padding -----------------------------------------------------------


def encoding_vectors() -> None:
    valid = [
        ("int 0", "00"),
        ("int 23", "17"),
        ("int 24", "1818"),
        ("int -1", "20"),
        ("int 2^32", "1b0000000100000000"),
        ("bytes", "43010203"),
        ("text", "6161"),
        ("array", "83010203"),
        ("map sorted by encoded key", "a2616101626161" + "02"),
        ("map shorter key first", "a2617a016261610" + "2"),
        ("booleans and null", "83f4f5f6"),
    ]
    invalid = [
        ("unsorted map keys", "a261620161610" + "2"),
        ("longer key before shorter", "a2626161016178" + "02"),
        ("duplicate map key", "a2616101616102"),
        ("non-minimal int (1 as 0x1801)", "1801"),
        ("non-minimal int (uint16 for 24)", "190018"),
        ("non-minimal length", "5801ff"),
        ("indefinite-length bytes", "5f4101ff"),
        ("indefinite-length array", "9f01ff"),
        ("indefinite-length map", "bf616101ff"),
        ("float", "f93c00"),
        ("double", "fb3ff0000000000000"),
        ("tag 1 (epoch time)", "c11a514b67b0"),
        ("tag 2 (bignum)", "c249010000000000000000"),
        ("undefined", "f7"),
        ("integer map key", "a10102"),
        ("trailing bytes", "0000"),
        ("truncated array", "8301"),
        ("empty", ""),
    ]
    vectors: list[dict[str, Any]] = [
        {"description": d, "encoded": e, "valid": True} for d, e in valid
    ] + [{"description": d, "encoded": e, "valid": False} for d, e in invalid]
    write("cbor_v1.json", "Canonical CBOR: accepted and refused encodings", "§2.1", vectors)


def padding() -> None:
    lengths = [0, 1, 2, 9, 255, 256, 1000, 1023, 1024, 1025, 4096, 10_000, 65_535, 1_000_000]
    vectors: list[dict[str, Any]] = []
    for n in lengths:
        vectors.append(
            {
                "content_length": n,
                "padme": padme(n),
                "padded_length": padded_length(n),
            }
        )
    examples = [b"", b"sealbox", bytes(300)]
    for content in examples:
        vectors.append({"content": content.hex(), "padded": pad(content).hex()})
    write("padding_v1.json", "Padmé buckets and 0x80 0x00* body padding", "§2.2", vectors)


# --- envelopes and the sender-key chain ------------------------------------------------


def chain() -> None:
    vectors: list[dict[str, Any]] = []
    for n in range(2):
        ck0 = ChainKey(fixed(f"chain {n}"))
        steps = []
        chain_key = ck0
        for i in range(1, 6):
            message, chain_key = chain_key.advance()
            steps.append(
                {
                    "index": i,
                    "message_key": message.raw.hex(),
                    "next_chain_key": chain_key.raw.hex(),
                }
            )
        steps.append({"index": 1000, "message_key": message_key_at(ck0, 1000).raw.hex()})
        vectors.append({"chain_key": ck0.raw.hex(), "steps": steps})
    write(
        "chain_v1.json", "Sender-key chain: MK_i and CK_i from CK0 (HMAC-SHA256)", "§4.3", vectors
    )


def envelopes() -> None:
    device = SigningKey(fixed("device 0"))
    ck0 = ChainKey(fixed("chain 0"))
    org = fixed("org", 16)
    key_envelope_id = fixed("key envelope id")
    cases = [
        {
            "name": "first revision, empty content",
            "seq": 2,
            "key_seq": 1,
            "parents": [],
            "content": b"",
        },
        {
            "name": "1 KiB report",
            "seq": 3,
            "key_seq": 1,
            "parents": [fixed("parent a")],
            "content": fixed("report", 1024),
        },
        {
            "name": "merge of two heads, 300 bytes",
            "seq": 7,
            "key_seq": 5,
            "parents": [fixed("parent c"), fixed("parent b")],
            "content": fixed("merge", 300),
        },
    ]
    vectors: list[dict[str, Any]] = []
    prev = key_envelope_id
    for n, case in enumerate(cases):
        index = case["seq"] - case["key_seq"]
        message_key = message_key_at(ck0, index)
        nonce = fixed(f"nonce {n}", 12)
        report = fixed(f"report id {n}", 16)
        # The log the device had verified (§17.8): none yet for the first, then size 40 + n.
        witness = NO_WITNESS if n == 0 else (40 + n).to_bytes(8, "big") + fixed(f"log root {n}")
        envelope = _seal_revision_from_parts(
            org=org,
            report=report,
            parents=case["parents"],
            seq=case["seq"],
            prev=prev,
            roster_version=3,
            key_seq=case["key_seq"],
            message_key=message_key,
            content=case["content"],
            signing_key=device,
            nonce=nonce,
            witness=witness,
        )
        vectors.append(
            {
                "description": case["name"],
                "inputs": {
                    "org": org.hex(),
                    "report": report.hex(),
                    "parents": [p.hex() for p in case["parents"]],
                    "seq": case["seq"],
                    "prev": prev.hex(),
                    "roster_version": 3,
                    "key_seq": case["key_seq"],
                    "chain_key": ck0.raw.hex(),
                    "message_key": message_key.raw.hex(),
                    "content": case["content"].hex(),
                    "signing_seed": fixed("device 0").hex(),
                    "nonce": nonce.hex(),
                    "witness": witness.hex(),
                },
                "header": envelope.header_bytes.hex(),
                "header_hash": envelope.header_hash.hex(),
                "body": envelope.body.hex(),
                "signature": envelope.signature.hex(),
                "id": envelope.id.hex(),
                "envelope": envelope.to_bytes().hex(),
            }
        )
        prev = envelope.id
    write("envelope_v1.json", "Revision envelopes (kind rev)", "§4.1, §4.2, §4.4, §17.8", vectors)


def sender_keys() -> None:
    device = SigningKey(fixed("device 0"))
    org = fixed("org", 16)
    vectors: list[dict[str, Any]] = []
    for n, (count, seq) in enumerate(((1, 1), (3, 12))):
        kem_seeds = [fixed(f"coordinator kem {i}") for i in range(count)]
        recipients = [KemPrivateKey(s).public_key for s in kem_seeds]
        ck0 = ChainKey(fixed(f"sender chain {n}"))
        prev = ZERO if seq == 1 else fixed("sender prev")
        envelope = seal_sender_key(
            org=org,
            seq=seq,
            prev=prev,
            roster_version=2 + n,
            chain_key=ck0,
            recipients=recipients,
            signing_key=device,
        )
        assert parse_envelope(envelope.to_bytes()) == envelope
        vectors.append(
            {
                "description": f"sender-key envelope to {count} coordinator(s)",
                "inputs": {
                    "org": org.hex(),
                    "seq": seq,
                    "prev": prev.hex(),
                    "roster_version": 2 + n,
                    "chain_key": ck0.raw.hex(),
                    "recipient_seeds": [s.hex() for s in kem_seeds],
                    "signing_seed": fixed("device 0").hex(),
                },
                "recipient_ids": [r.hex() for r in envelope.header.recipients],
                "key_commitment": digest(Purpose.KEY_COMMITMENT, ck0.raw).hex(),
                "header": envelope.header_bytes.hex(),
                "header_hash": envelope.header_hash.hex(),
                "id": envelope.id.hex(),
                "envelope": envelope.to_bytes().hex(),
            }
        )
    # An author who equivocates on CK0 (THREAT_MODEL §7.11): the header commits to the first
    # coordinator's key, the second coordinator's wrap holds another one.  A reader MUST open
    # the first and refuse the second with a key-commitment mismatch (§4.3, §4.5).
    kem_seeds = [fixed(f"coordinator kem {i}") for i in range(2)]
    kems = [KemPrivateKey(s) for s in kem_seeds]
    chain_keys = [ChainKey(fixed("equivocated chain 0")), ChainKey(fixed("equivocated chain 1"))]
    envelope = _seal_sender_key_from_parts(
        org=org,
        seq=1,
        prev=ZERO,
        roster_version=2,
        committed=chain_keys[0],
        wrapped=[(k.public_key, ck) for k, ck in zip(kems, chain_keys, strict=True)],
        signing_key=device,
    )
    vectors.append(
        {
            "description": "sender-key envelope whose wraps carry two different chain keys",
            "inputs": {
                "org": org.hex(),
                "seq": 1,
                "prev": ZERO.hex(),
                "roster_version": 2,
                "chain_key": chain_keys[0].raw.hex(),
                "recipient_seeds": [s.hex() for s in kem_seeds],
                "wrapped_chain_keys": [k.raw.hex() for k in chain_keys],
                "signing_seed": fixed("device 0").hex(),
            },
            "recipient_ids": [r.hex() for r in envelope.header.recipients],
            "key_commitment": digest(Purpose.KEY_COMMITMENT, chain_keys[0].raw).hex(),
            "header": envelope.header_bytes.hex(),
            "header_hash": envelope.header_hash.hex(),
            "id": envelope.id.hex(),
            "envelope": envelope.to_bytes().hex(),
            "opens": [k == chain_keys[0] for k in chain_keys],
        }
    )
    write(
        "sender_key_v1.json",
        "Sender-key envelopes (kind key). HPKE is randomised: the wraps change when regenerated; "
        "tests open the recorded bytes and rebuild the deterministic parts. The last one "
        "equivocates: only the recipients whose `opens` is true get a chain key, the others "
        "MUST fail the key commitment.",
        "§4.3, §4.4",
        vectors,
    )


# --- roster, invites, receipts -----------------------------------------------------------


def roster() -> None:
    coordinator = SigningKey(fixed("coordinator 0"))
    coordinator_kem = KemPrivateKey(fixed("coordinator kem 0"))
    second = SigningKey(fixed("coordinator 1"))
    second_kem = KemPrivateKey(fixed("coordinator kem 1"))
    field = SigningKey(fixed("device 0"))
    server = SigningKey(fixed("server"))
    org = fixed("org", 16)

    def member(key: SigningKey, role: Role, kem: KemPrivateKey | None = None) -> Member:
        return Member(key.verify_key.key_id, key.verify_key, role, kem.public_key if kem else None)

    genesis = Roster(
        org, 1, ZERO, server.verify_key, (member(coordinator, Role.COORDINATOR, coordinator_kem),)
    )
    v1 = genesis.sign(coordinator)
    v2 = (
        v1.roster.with_member(member(field, Role.FIELD))
        .with_member(member(second, Role.COORDINATOR, second_kem))
        .next_version(v1)
        .sign(coordinator)
    )
    v3 = v2.roster.revoke(field.verify_key.key_id, after_seq=41).next_version(v2).sign(second)
    vectors = [
        {
            "version": s.roster.version,
            "signer_seed": signer.hex(),
            "signed": s.to_bytes().hex(),
            "body": s.document.body.hex(),
            "fingerprint": s.hash.hex(),
            "fingerprint_text": format_fingerprint(s.hash),
        }
        for s, signer in (
            (v1, fixed("coordinator 0")),
            (v2, fixed("coordinator 0")),
            (v3, fixed("coordinator 1")),
        )
    ]
    document = {
        "inputs": {
            "org": org.hex(),
            "server_seed": fixed("server").hex(),
            "coordinator_seeds": [fixed("coordinator 0").hex(), fixed("coordinator 1").hex()],
            "coordinator_kem_seeds": [
                fixed("coordinator kem 0").hex(),
                fixed("coordinator kem 1").hex(),
            ],
            "field_seed": fixed("device 0").hex(),
            "revoked_after": 41,
        },
        "chain": vectors,
    }
    write(
        "roster_v1.json",
        "A three-version roster chain: genesis, +field device +coordinator, revocation",
        "§3, §5.1, §5.2, §5.3",
        [document],
    )


def invites() -> None:
    coordinator = SigningKey(fixed("coordinator 0"))
    device = SigningKey(fixed("device 1"))
    org = fixed("org", 16)
    fingerprint = fixed("roster fingerprint")
    random = fixed("invite random", 48)
    document, code = Invite.create(
        org_id=org,
        role=Role.FIELD,
        expires_at=1_790_000_000,
        roster_fingerprint=fingerprint,
        server_url="https://sealbox.example.org",
        signing_key=coordinator,
        random=random,
    )
    label_nonce = fixed("label nonce", 12)
    label = seal_label(
        "Amina's phone",
        secret=code.secret,
        invite_id=code.invite_id,
        device_id=device.verify_key.key_id,
        nonce=label_nonce,
    )
    enrollment = Enrollment(org, code.invite_id, device.verify_key, Role.FIELD, label).sign(device)
    assert InviteCode.decode(code.encode()) == code
    vectors = [
        {
            "inputs": {
                "coordinator_seed": fixed("coordinator 0").hex(),
                "device_seed": fixed("device 1").hex(),
                "org": org.hex(),
                "role": "field",
                "expires_at": 1_790_000_000,
                "roster_fingerprint": fingerprint.hex(),
                "server_url": "https://sealbox.example.org",
                "random": random.hex(),
                "label": "Amina's phone",
                "label_nonce": label_nonce.hex(),
            },
            "invite_id": code.invite_id.hex(),
            "secret": code.secret.hex(),
            "secret_hash": secret_hash(code.secret).hex(),
            "invite_document": document.to_bytes().hex(),
            "code": code.encode(),
            "sealed_label": label.hex(),
            "enrollment_document": enrollment.to_bytes().hex(),
        }
    ]
    write(
        "invite_v1.json",
        "Invite document, invite code, sealed label, enrollment",
        "§3, §6",
        vectors,
    )


def receipts() -> None:
    server = SigningKey(fixed("server"))
    org = fixed("org", 16)
    device = SigningKey(fixed("device 0")).verify_key.key_id
    items = (
        ReceiptItem(fixed("envelope 1"), 2, 17),
        ReceiptItem(fixed("envelope 2"), 3, 18),
    )
    # The log holds the two items at leaves 16 and 17 of 18; the other leaves are the
    # fixed ids "leaf n" (§17.1): the receipt's checkpoint and batch proof (§17.3).
    at = {i.server_seq - 1: i.envelope_id for i in items}
    leaves = [leaf_hash(at.get(n, fixed(f"leaf {n}"))) for n in range(18)]
    frontier, completed = Frontier.empty().append(leaves)
    proof = tuple(batch_inclusion_proof(sorted(at), 18, dict(completed)))
    checkpoint = Checkpoint(org, 18, frontier.root(), 1_780_000_000).sign(server).to_bytes()
    receipt = Receipt(org, device, 1_780_000_000, items, checkpoint, proof)
    document = receipt.sign(server)
    vectors = [
        {
            "inputs": {
                "server_seed": fixed("server").hex(),
                "org": org.hex(),
                "device": device.hex(),
                "issued_at": 1_780_000_000,
                "items": [[i.envelope_id.hex(), i.device_seq, i.server_seq] for i in items],
                "checkpoint": checkpoint.hex(),
                "proof": [p.hex() for p in proof],
            },
            "document": document.to_bytes().hex(),
            "digest": digest(Purpose.RECEIPT_SIGNATURE, document.body).hex(),
        }
    ]
    write(
        "receipt_v1.json",
        "A server-signed delivery receipt with its checkpoint and batch inclusion proof",
        "§3, §8.4, §17.3",
        vectors,
    )


# --- local key files, attachment chunks ----------------------------------------------------


def keyfiles() -> None:
    vectors: list[dict[str, Any]] = []
    for n, (secret, passphrase) in enumerate(
        ((fixed("keyfile secret", 96), b"correct horse battery staple"), (b"", "pässwörd".encode()))
    ):
        salt = fixed(f"keyfile salt {n}", 16)
        nonce = fixed(f"keyfile nonce {n}", 12)
        params = KdfParams(memory_cost=65536, iterations=3, lanes=4)
        blob = wrap_keyfile(secret, passphrase, params=params, salt=salt, nonce=nonce)
        vectors.append(
            {
                "secret": secret.hex(),
                "passphrase": passphrase.hex(),
                "params": {"m": params.memory_cost, "t": params.iterations, "p": params.lanes},
                "salt": salt.hex(),
                "nonce": nonce.hex(),
                "keyfile": blob.hex(),
            }
        )
    write("keyfile_v1.json", "Argon2id + ChaCha20-Poly1305 key files", "§12", vectors)


def streams() -> None:
    vectors: list[dict[str, Any]] = []
    for n, (size, chunk_size) in enumerate(
        ((0, 64), (1, 64), (64, 64), (65, 64), (300, 64), (1000, 256))
    ):
        key = fixed(f"attachment key {n}")
        attachment_id = fixed(f"attachment id {n}", 16)
        data = fixed(f"attachment data {n}", size)
        chunks = list(stream.seal_chunks(key, attachment_id, [data], chunk_size=chunk_size))
        manifest = stream.manifest_of(chunks, chunk_size=chunk_size)
        vectors.append(
            {
                "key": key.hex(),
                "attachment_id": attachment_id.hex(),
                "chunk_size": chunk_size,
                "plaintext": data.hex(),
                "chunks": [c.hex() for c in chunks],
                "chunk_count": manifest.chunk_count,
                "total_size": manifest.total_size,
                "sha256": manifest.sha256.hex(),
            }
        )
    write("stream_v1.json", "Attachment chunks (STREAM, ChaCha20-Poly1305)", "§13", vectors)


GENERATORS = {
    "keys": keys,
    "cbor": encoding_vectors,
    "padding": padding,
    "chain": chain,
    "envelope": envelopes,
    "sender_key": sender_keys,
    "roster": roster,
    "invite": invites,
    "receipt": receipts,
    "keyfile": keyfiles,
    "stream": streams,
}


def main(argv: list[str], generators: dict[str, Any] = GENERATORS) -> int:
    """Regenerate every file of ``generators``, or only the ones named (``generate.py
    stream``); the other generator scripts pass their own."""
    names = argv or list(generators)
    unknown = [n for n in names if n not in generators]
    if unknown:
        print(f"unknown vector sets {unknown}; choose from {sorted(generators)}", file=sys.stderr)
        return 2
    for name in names:
        generators[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
