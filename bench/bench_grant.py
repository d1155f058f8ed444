"""Benchmark: the bytes a grant (PROTOCOL §19) costs per epoch it carries.

A grant re-wraps each epoch's chain key to the grantee's HPKE key, bound to the epoch's key
envelope id, device, key sequence and commitment, in one document signed by the granter.
This builds honest key envelopes and grants of 1, 2, 10 and 256 epochs (the most one grant
carries) with the reference code:

    .venv/bin/python bench/bench_grant.py

Prints one JSON object: per epoch count, the grant document's bytes and bytes per epoch,
and the marginal cost of one more epoch (what a coordinator joining after N epochs costs
the server and its link: about N times that).
"""

from __future__ import annotations

import json

from crypto import ChainKey, KemPrivateKey, SigningKey, seal_sender_key
from sync.grant import make_grant

ORG = bytes(16)


def main() -> None:
    founder, newcomer, granter = (
        KemPrivateKey.generate(),
        KemPrivateKey.generate(),
        SigningKey.generate(),
    )
    author = SigningKey.generate()
    epochs = []
    prev = bytes(32)
    for n in range(256):
        chain_key = ChainKey(bytes([n]) * 32)
        envelope = seal_sender_key(
            org=ORG, seq=1 + n, prev=prev, roster_version=2, chain_key=chain_key,
            recipients=[founder.public_key], signing_key=author,
        )  # fmt: skip
        prev = bytes([1]) * 32
        epochs.append((envelope, chain_key))
    sizes = {}
    for count in (1, 2, 10, 256):
        document = make_grant(
            org_id=ORG, roster_version=3, issued_at=1_780_000_000, epochs=epochs[:count],
            recipient=newcomer.public_key, signing_key=granter,
        ).document  # fmt: skip
        sizes[count] = len(document)
    print(
        json.dumps(
            {
                "grant_bytes": sizes,
                "bytes_per_epoch": {n: round(b / n, 1) for n, b in sizes.items()},
                "marginal_bytes_per_epoch": round((sizes[256] - sizes[10]) / 246, 1),
                "fixed_bytes": round(sizes[1] - (sizes[256] - sizes[10]) / 246, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
