"""An organisation's append-only log: RFC 9162 §2.1 Merkle tree hashing and proofs, sans-I/O.

Theory of operation (docs/_draft_tlog.md, to become PROTOCOL §17):
* Leaves are hashed ``SHA-256(0x00 || leaf)``, interior nodes ``SHA-256(0x01 || left ||
  right)``; the tree over n leaves splits at the largest power of two below n (RFC 9162
  §2.1.1). A Sealbox leaf is a 32-byte envelope id, in server sequence order.
* Storage is by *perfect* subtrees only: a `Node` ``(level, index)`` is the subtree over
  leaves ``[index << level, (index + 1) << level)``; its hash never changes once complete.
  `Frontier` holds the roots of the perfect subtrees along the right edge (one per set bit of
  the size), which is all that is needed to append and to compute the current root.
* Every proof is built in two steps, with no I/O here: ``*_nodes`` says which perfect
  subtrees a proof needs (the server fetches them in one query), ``*_proof`` composes the
  proof from them (a subtree on the right edge that is not perfect is hashed from its
  perfect parts by `subtree_hash`).  Each single proof touches O(log n) nodes; nothing
  recurses deeper than the tree (at most 63 levels: sizes are at most 2^63).
* Verifiers refuse anything malformed before hashing: wrong types, hashes that are not 32
  bytes, indices out of range, and proofs of any length but the exact one the shape needs
  (so preceding or trailing garbage, truncation and extension all fail). Every failure is a
  `ProofError`.
"""

from __future__ import annotations

from sync.merkle.proofs import (
    batch_inclusion_proof,
    batch_nodes,
    batch_ranges,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    verify_batch_inclusion,
    verify_consistency,
    verify_inclusion,
)
from sync.merkle.tree import (
    EMPTY_ROOT,
    HASH_LENGTH,
    MAX_PROOF_HASHES,
    MAX_TREE_SIZE,
    Frontier,
    Node,
    ProofError,
    leaf_hash,
    node_hash,
    range_nodes,
    root_of,
    subtree_hash,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_LENGTH",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "Frontier",
    "Node",
    "ProofError",
    "batch_inclusion_proof",
    "batch_nodes",
    "batch_ranges",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_of",
    "subtree_hash",
    "verify_batch_inclusion",
    "verify_consistency",
    "verify_inclusion",
]
