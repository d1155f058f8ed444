"""Generate the transparency log's known-answer vectors: merkle_v1.json and checkpoint_v1.json.

Run from the repository root:  .venv/bin/python tests/vectors/generate_tlog.py [set ...]

Same conventions as generate.py (whose `fixed` labels and `write` layout it reuses): every
input is derived from a fixed label, re-running rewrites identical files, and the tests never
run this script; they compare the code against the committed files (tests/sync/test_merkle.py,
tests/sync/test_checkpoint.py). The published RFC 9162 data is imported separately
(import_rfc9162.py, merkle_rfc9162.json).
"""

from __future__ import annotations

import sys
from typing import Any

from generate import fixed, main, write

from crypto import Purpose, SigningKey, digest
from sync.checkpoint import Checkpoint
from sync.merkle import (
    Frontier,
    batch_inclusion_proof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
)

SECTION = "§17 (docs/_draft_tlog.md)"


def merkle() -> None:
    vectors: list[dict[str, Any]] = []
    for size, batch in ((13, range(9, 13)), (8, range(0, 3))):
        ids = [fixed(f"envelope {i}") for i in range(size)]
        leaves = [leaf_hash(e) for e in ids]
        frontier, completed = Frontier.empty().append(leaves)
        nodes = dict(completed)
        vectors.append(
            {
                "envelope_ids": [e.hex() for e in ids],
                "leaf_hashes": [x.hex() for x in leaves],
                "roots": [root_of(leaves[:n]).hex() for n in range(size + 1)],
                "frontier": frontier.to_bytes().hex(),
                "inclusion": [
                    {"index": i, "proof": [p.hex() for p in inclusion_proof(i, size, nodes)]}
                    for i in sorted({0, 5, size - 1})
                ],
                "consistency": [
                    {"old_size": m, "proof": [p.hex() for p in consistency_proof(m, size, nodes)]}
                    for m in (1, 4, 7, size - 1)
                ],
                "batch": {
                    "indices": list(batch),
                    "proof": [p.hex() for p in batch_inclusion_proof(batch, size, nodes)],
                },
            }
        )
    write(
        "merkle_v1.json",
        "The organisation log: leaf = envelope id, RFC 9162 hashing; roots of every prefix "
        "size, the frontier, inclusion, consistency and batch inclusion proofs",
        SECTION,
        vectors,
    )


def checkpoints() -> None:
    server = SigningKey(fixed("server"))
    org = fixed("org", 16)
    leaves = [leaf_hash(fixed(f"envelope {i}")) for i in range(13)]
    vectors = []
    for size in (13, 0):
        checkpoint = Checkpoint(org, size, root_of(leaves[:size]), 1_780_000_000 + size)
        document = checkpoint.sign(server)
        vectors.append(
            {
                "inputs": {
                    "server_seed": fixed("server").hex(),
                    "org": org.hex(),
                    "size": size,
                    "root": checkpoint.root.hex(),
                    "issued_at": checkpoint.issued_at,
                },
                "body": document.body.hex(),
                "document": document.to_bytes().hex(),
                "digest": digest(Purpose.CHECKPOINT_SIGNATURE, document.body).hex(),
                "code_digest": digest(
                    Purpose.CHECKPOINT_CODE, org + size.to_bytes(8, "big") + checkpoint.root
                ).hex(),
                "short_code": checkpoint.short_code(),
            }
        )
    write(
        "checkpoint_v1.json",
        "Server-signed checkpoints of the organisation log (the 13-leaf tree of merkle_v1.json "
        "and the empty tree), with the digest of the signed message and the short code",
        SECTION,
        vectors,
    )


GENERATORS = {"merkle": merkle, "checkpoint": checkpoints}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
