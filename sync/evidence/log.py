"""Prove disclosed revisions in server checkpoints, from the log's leaves (PROTOCOL §17, §22).

`prove_in_log` is the exporter's side of the bundle's ``"c"`` section: given the log's leaves
(envelope ids in server order, as a coordinator pulled them) and the signed checkpoints it
kept, it picks for each disclosed revision the smallest checkpoint whose tree holds it and
builds one batch inclusion proof per checkpoint used (PROTOCOL §17.2) over the disclosed
leaves only.  A checkpoint the leaves do not hash to (another log, a restore) is not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crypto import VerificationFailed, VerifyKey
from sync.checkpoint import Checkpoint
from sync.evidence.bundle import LogProof
from sync.evidence.facts import EvidenceRefused, Logged, short
from sync.merkle import (
    Frontier,
    ProofError,
    batch_inclusion_proof,
    batch_nodes,
    leaf_hash,
    root_of,
    verify_batch_inclusion,
)

__all__ = ["check_log", "prove_in_log"]


def prove_in_log(
    leaves: Sequence[bytes],
    checkpoints: Iterable[bytes],
    revisions: Iterable[bytes],
    *,
    org_id: bytes,
    server_key: VerifyKey,
) -> tuple[LogProof, ...]:
    """Batch inclusion proofs of ``revisions`` (those the leaves hold) in the smallest usable
    ``checkpoints`` (signed documents) that hold them."""
    seq_of = {envelope_id: i + 1 for i, envelope_id in enumerate(leaves)}
    wanted = sorted((seq_of[r], r) for r in set(revisions) if r in seq_of)
    if not wanted:
        return ()
    hashes = [leaf_hash(e) for e in leaves]
    verified = []
    for document in checkpoints:
        try:
            checkpoint = Checkpoint.verify(document, server_key, org_id=org_id)
        except VerificationFailed:
            continue
        if 0 < checkpoint.size <= len(leaves):
            verified.append((checkpoint.size, checkpoint, document))
    verified.sort(key=lambda v: v[0])
    usable: list[tuple[Checkpoint, bytes]] = []
    frontier, done = Frontier.empty(), 0
    for size, checkpoint, document in verified:
        if usable and usable[-1][0].size == size:
            continue  # one per size: the first kept
        frontier, _ = frontier.append(hashes[done:size])
        done = size
        if frontier.root() == checkpoint.root:
            usable.append((checkpoint, document))
    chosen: dict[int, list[tuple[int, bytes]]] = {}
    for seq, envelope_id in wanted:
        at = next((i for i, (c, _) in enumerate(usable) if c.size >= seq), None)
        if at is not None:
            chosen.setdefault(at, []).append((seq, envelope_id))
    proofs = []
    for at, items in sorted(chosen.items()):
        checkpoint, document = usable[at]
        indices = [seq - 1 for seq, _ in items]
        nodes = {
            (level, index): root_of(hashes[index << level : (index + 1) << level])
            for level, index in batch_nodes(indices, checkpoint.size)
        }
        proof = batch_inclusion_proof(indices, checkpoint.size, nodes)
        proofs.append(LogProof(document, tuple(items), tuple(proof)))
    return tuple(proofs)


def check_log(
    raw: Any, org: bytes, server_key: VerifyKey, revisions: set[bytes]
) -> tuple[list[Checkpoint], dict[bytes, Logged]]:
    """The verifier's side of the ``"c"`` section: each checkpoint is signed by the pinned
    server key for this organisation, names only revisions of the bundle, each at one
    position, and its batch inclusion proof verifies against its signed root (PROTOCOL
    §17.2, §17.3).  Returns the checkpoints and, per revision, the earliest one holding it.

    Raises:
        EvidenceRefused: naming the checkpoint and what failed.
    """
    if not isinstance(raw, list):
        raise EvidenceRefused("the checkpoints section must be a list")
    checkpoints: list[Checkpoint] = []
    logged: dict[bytes, Logged] = {}
    seqs: dict[bytes, int] = {}
    for i, entry in enumerate(raw):
        where = f"checkpoint {i + 1}"
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], bytes)):
            raise EvidenceRefused(f"{where} is malformed")
        try:
            checkpoint = Checkpoint.verify(entry[0], server_key, org_id=org)
        except VerificationFailed:
            raise EvidenceRefused(
                f"{where} is not signed by the server key the roster pins (sv), for this"
                " organisation"
            ) from None
        leaves, proof = entry[1], entry[2]
        if not isinstance(leaves, list) or not leaves or not isinstance(proof, list):
            raise EvidenceRefused(f"{where}: malformed leaves or proof")
        hashes: dict[int, bytes] = {}
        for leaf in leaves:
            if not (
                isinstance(leaf, list) and len(leaf) == 2 and type(leaf[0]) is int
                and isinstance(leaf[1], bytes) and 1 <= leaf[0] <= checkpoint.size
            ):  # fmt: skip
                raise EvidenceRefused(f"{where}: a leaf is malformed or outside its tree")
            seq, rid = leaf
            if rid not in revisions:
                raise EvidenceRefused(
                    f"{where} proves envelope {short(rid)}, not a revision of the bundle"
                )
            if seqs.setdefault(rid, seq) != seq:
                raise EvidenceRefused(
                    f"revision {short(rid)} is at two positions in the server's log"
                    f" ({seqs[rid]} and {seq}): the server signed inconsistent logs"
                )
            if seq - 1 in hashes:
                raise EvidenceRefused(f"{where}: two leaves at server seq {seq}")
            hashes[seq - 1] = leaf_hash(rid)
        if [s for s, _ in leaves] != sorted(s for s, _ in leaves):
            raise EvidenceRefused(f"{where}: leaves must be in server order")
        try:
            verify_batch_inclusion(hashes, checkpoint.size, proof, checkpoint.root)
        except ProofError:
            raise EvidenceRefused(
                f"{where} (size {checkpoint.size}): the inclusion proof of its revisions does"
                " not verify against its signed root"
            ) from None
        checkpoints.append(checkpoint)
        for seq, rid in leaves:
            held = logged.get(rid)
            if held is None or checkpoint.issued_at < held.issued_at:
                logged[rid] = Logged(
                    seq, checkpoint.size, checkpoint.issued_at, checkpoint.short_code()
                )
    return checkpoints, logged
