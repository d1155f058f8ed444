"""A small organisation built in memory, deterministically, for evidence bundle tests and vectors.

One coordinator and one field device (roster versions 1 and 2), the server's key, and two
reports: report A with three revisions (the field device writes, adds a photo, edits; the
coordinator edits on top) and report B with one revision by the field device, sealed between
report A's.  Every key, nonce and chain key comes from `fixed` labels, so the bundle's bytes are
the same on every run (HPKE is randomised, so the key envelopes that open each epoch are not
built: only their ids appear, as the next revision's signed ``h`` link and as log leaves).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from crypto import ChainKey, KemPrivateKey, SigningKey, message_key_at
from crypto.envelope import Envelope, _seal_revision_from_parts
from crypto.stream import manifest_of, seal_chunks
from sync.attachments import SealedTransfer
from sync.checkpoint import Checkpoint
from sync.evidence import Bundle, RevisionPart, build_bundle, prove_in_log
from sync.merkle import leaf_hash, root_of
from sync.report import AttachmentManifest, ReportContent
from sync.roster import Member, Role, Roster, SignedRoster


def fixed(label: str, length: int = 32) -> bytes:
    """Deterministic test bytes (the same construction as tests/vectors/generate.py)."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"sealbox test vector {label} {counter}".encode()).digest()
        counter += 1
    return out[:length]


ORG = fixed("evidence org", 16)
REPORT_A = fixed("evidence report a", 16)
REPORT_B = fixed("evidence report b", 16)
T0 = 1_780_000_000
PHOTO_SIZE = 3000


@dataclass
class Org:
    coordinator: SigningKey = field(default_factory=lambda: SigningKey(fixed("coordinator 0")))
    kem: KemPrivateKey = field(default_factory=lambda: KemPrivateKey(fixed("coordinator kem 0")))
    field_device: SigningKey = field(default_factory=lambda: SigningKey(fixed("device 0")))
    server: SigningKey = field(default_factory=lambda: SigningKey(fixed("server")))
    rosters: list[SignedRoster] = field(default_factory=list)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    leaves: list[bytes] = field(default_factory=list)
    checkpoints: list[bytes] = field(default_factory=list)
    photo: bytes = b""


def _member(key: SigningKey, role: Role, kem: KemPrivateKey | None = None) -> Member:
    return Member(key.verify_key.key_id, key.verify_key, role, kem.public_key if kem else None)


def build_org() -> Org:
    org = Org()
    genesis = Roster(
        ORG,
        1,
        bytes(32),
        org.server.verify_key,
        (_member(org.coordinator, Role.COORDINATOR, org.kem),),
    ).sign(org.coordinator)
    v2 = (
        genesis.roster.with_member(_member(org.field_device, Role.FIELD))
        .next_version(genesis)
        .sign(org.coordinator)
    )
    org.rosters = [genesis, v2]

    org.photo = (fixed("photo", 64) * (PHOTO_SIZE // 64 + 1))[:PHOTO_SIZE]
    attachment_id = fixed("photo id", 16)
    attachment_key = fixed("photo key")
    chunks = list(seal_chunks(attachment_key, attachment_id, [org.photo], chunk_size=1024))
    photo = AttachmentManifest(
        attachment_id,
        "market.jpg",
        len(org.photo),
        hashlib.sha256(org.photo).digest(),
        "image/jpeg",
        SealedTransfer(attachment_key, manifest_of(chunks, chunk_size=1024)),
    )
    field_chain = ChainKey(fixed("field chain key"))
    coord_chain = ChainKey(fixed("coordinator chain key"))
    field_key_envelope = fixed("field key envelope id")
    coord_key_envelope = fixed("coordinator key envelope id")

    def seal(
        name: str, author: SigningKey, chain: ChainKey, seq: int, prev: bytes, **kw: object
    ) -> Envelope:
        report, parents, content = kw["report"], kw.get("parents", ()), kw["content"]
        key = message_key_at(chain, seq - 1)
        assert isinstance(content, ReportContent) and isinstance(report, bytes)
        envelope = _seal_revision_from_parts(
            org=ORG,
            report=report,
            parents=[org.envelopes[p].id for p in parents],  # type: ignore[union-attr]
            seq=seq,
            prev=prev,
            roster_version=2,
            key_seq=1,
            message_key=key,
            content=content.encode(),
            signing_key=author,
            nonce=fixed(f"nonce {name}", 12),
        )
        org.envelopes[name], org.keys[name], org.contents[name] = (
            envelope,
            key.raw,
            content.encode(),
        )
        return envelope

    a1 = seal(
        "a1", org.field_device, field_chain, 2, field_key_envelope, report=REPORT_A,
        content=ReportContent(
            T0 + 10, {"place": "Market", "victims": "2"}, ("seen at dawn",), (photo,)
        ),
    )  # fmt: skip
    b1 = seal(
        "b1", org.field_device, field_chain, 3, a1.id, report=REPORT_B,
        content=ReportContent(T0 + 20, {"title": "another report"}),
    )  # fmt: skip
    a2 = seal(
        "a2", org.field_device, field_chain, 4, b1.id, report=REPORT_A, parents=("a1",),
        content=ReportContent(T0 + 30, {"victims": "3"}),
    )  # fmt: skip
    a3 = seal(
        "a3", org.coordinator, coord_chain, 2, coord_key_envelope, report=REPORT_A,
        parents=("a2",), content=ReportContent(T0 + 40, {"place": "Central market"}),
    )  # fmt: skip
    # The log, in server order: each key envelope before its revisions; checkpoints after pushes.
    org.leaves = [field_key_envelope, a1.id, b1.id]
    org.checkpoints.append(_checkpoint(org, T0 + 100))
    org.leaves += [a2.id, coord_key_envelope]
    org.checkpoints.append(_checkpoint(org, T0 + 200))
    org.leaves += [a3.id]
    org.checkpoints.append(_checkpoint(org, T0 + 300))
    return org


def _checkpoint(org: Org, issued_at: int) -> bytes:
    root = root_of([leaf_hash(e) for e in org.leaves])
    return Checkpoint(ORG, len(org.leaves), root, issued_at).sign(org.server).to_bytes()


def part(org: Org, name: str) -> RevisionPart:
    envelope = org.envelopes[name]
    return RevisionPart(envelope.to_bytes(), envelope.id, org.keys[name], org.contents[name])


def bundle_of(
    org: Org,
    names: tuple[str, ...] = ("a1", "a2", "a3"),
    *,
    reports: tuple[bytes, ...] = (REPORT_A,),
    photo: bool = True,
    summary: str = "<!DOCTYPE html><title>test</title>",
    labels: dict[bytes, str] | None = None,
) -> Bundle:
    parts = tuple(part(org, n) for n in names)
    log = prove_in_log(
        org.leaves,
        org.checkpoints,
        [p.envelope_id for p in parts],
        org_id=ORG,
        server_key=org.server.verify_key,
    )
    return Bundle(
        org_id=ORG,
        reports=reports,
        rosters=tuple(r.to_bytes() for r in org.rosters),
        revisions=parts,
        attachments={fixed("photo id", 16): org.photo} if photo else {},
        log=log,
        summary=summary,
        labels=labels or {},
    )


def signed(org: Org, bundle: Bundle, *, exporter: SigningKey | None = None) -> bytes:
    return build_bundle(
        bundle,
        fingerprint=org.rosters[-1].hash,
        exported_at=T0 + 1000,
        exporter=exporter or org.coordinator,
    )


def replaced(org: Org, name: str, **changes: bytes) -> Bundle:
    """Report A's bundle with revision ``name``'s part changed (to be signed by the exporter)."""
    bundle = bundle_of(org)
    target = org.envelopes[name].id
    parts = [
        dataclasses.replace(p, **changes) if p.envelope_id == target else p  # type: ignore[arg-type]
        for p in bundle.revisions
    ]
    return dataclasses.replace(bundle, revisions=tuple(parts))
