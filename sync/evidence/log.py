"""Prove disclosed revisions in server checkpoints, from the log's leaves (PROTOCOL §17, §22).

`prove_in_log` is the exporter's side of the bundle's ``"c"`` section: given the log's leaves
(envelope ids in server order, as a coordinator pulled them) and the signed checkpoints it
kept, it picks for each disclosed revision the smallest checkpoint whose tree holds it and
builds one batch inclusion proof per checkpoint used (PROTOCOL §17.2) over the disclosed
leaves only.  A checkpoint the leaves do not hash to (another log, a restore) is not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crypto import VerificationFailed, VerifyKey
from sync.checkpoint import Checkpoint
from sync.evidence.bundle import LogProof
from sync.merkle import Frontier, batch_inclusion_proof, batch_nodes, leaf_hash, root_of

__all__ = ["prove_in_log"]


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
