"""Generate the grant and rotation vectors: grant_v1.json, rotation_v1.json (PROTOCOL §19).

Run from the repository root:  .venv/bin/python tests/vectors/generate_grant.py

Same conventions as generate.py (`fixed` labels, `write` layout). HPKE is randomised, so
the key envelopes and grants are recorded to be opened, not re-derived: re-running writes
other bytes that check the same way. The tests never run this script; they check the code
against the committed file (tests/sync/test_grant.py).
"""

from __future__ import annotations

import sys
from typing import Any

from generate import fixed, main, write

from crypto import (
    ChainKey,
    KemPrivateKey,
    Purpose,
    SigningKey,
    digest,
    encoding,
    seal_sender_key,
    sign_document,
    wrap_chain_key,
)
from sync.grant import GrantEntry, _info, make_grant
from sync.rotation import RotationRequest

SECTION = "§3, §4.3, §19"
ISSUED_AT = 1_780_000_000


def grant() -> None:
    org = fixed("grant org", 16)
    founder = KemPrivateKey(fixed("grant founder kem"))
    newcomer = KemPrivateKey(fixed("grant newcomer kem"))
    granter = SigningKey(fixed("coordinator 0"))
    epochs = []
    for n in range(2):
        device = SigningKey(fixed(f"grant field device {n}"))
        chain_key = ChainKey(fixed(f"grant chain key {n}"))
        envelope = seal_sender_key(
            org=org,
            seq=1,
            prev=bytes(32),
            roster_version=2,
            chain_key=chain_key,
            recipients=[founder.public_key],
            signing_key=device,
        )
        epochs.append((envelope, chain_key, device))
    inputs = {
        "org": org.hex(),
        "granter_seed": fixed("coordinator 0").hex(),
        "grantee_kem_seed": fixed("grant newcomer kem").hex(),
        "other_kem_seed": fixed("grant founder kem").hex(),
        "roster_version": 3,
        "issued_at": ISSUED_AT,
        "device_seeds": [fixed(f"grant field device {n}").hex() for n in range(2)],
        "key_envelopes": [e.to_bytes().hex() for e, _, _ in epochs],
        "chain_keys": [k.raw.hex() for _, k, _ in epochs],
    }
    honest = make_grant(
        org_id=org,
        roster_version=3,
        issued_at=ISSUED_AT,
        epochs=[(e, k) for e, k, _ in epochs],
        recipient=newcomer.public_key,
        signing_key=granter,
    )
    body = encoding.decode(encoding.decode(honest.document)[2])
    swapped = dict(body, w=[list(x) for x in body["w"]])
    swapped["w"][0][4], swapped["w"][1][4] = body["w"][1][4], body["w"][0][4]
    substituted = dict(body, w=[list(x) for x in body["w"]])
    first = GrantEntry(*body["w"][0][:4], b"")
    substituted["w"][0][4] = wrap_chain_key(
        ChainKey(fixed("not the committed key")),
        newcomer.public_key,
        info=_info(org, granter.verify_key.key_id, newcomer.public_key.key_id, 3, first),
    )

    def signed(value: dict[str, Any]) -> bytes:
        return sign_document(Purpose.GRANT_SIGNATURE, value, granter).to_bytes()

    vectors = [
        {
            "name": "two epochs granted to the newcomer",
            "document": honest.document.hex(),
            "grant_id": digest(Purpose.GRANT_ID, honest.document).hex(),
            "digest": digest(Purpose.GRANT_SIGNATURE, encoding.decode(honest.document)[2]).hex(),
            "opens": True,
            "accepted": [True, True],
        },
        {
            "name": "the granter swapped the wraps of the two epochs (signed): no wrap opens",
            "document": signed(swapped).hex(),
            "opens": False,
        },
        {
            "name": "the granter wrapped another key for the first epoch (signed): the wrap"
            " opens, the key envelope's commitment refuses it",
            "document": signed(substituted).hex(),
            "opens": True,
            "accepted": [e.id != body["w"][0][0] for e, _, _ in epochs],
        },
    ]
    write(
        "grant_v1.json",
        "Grants of two field devices' epochs (key envelopes sealed to one coordinator) to a "
        "newcomer's HPKE key, signed by coordinator 0 of roster_v1.json: an honest grant (its "
        "id and the digest of the signed message), one whose wraps were swapped between "
        "epochs, one that substitutes a chain key; `accepted` is the verdict of "
        "accept_chain_key on each opened key against its key envelope (in the order of "
        "`key_envelopes`)",
        SECTION,
        [{"inputs": inputs, **v} for v in vectors],
    )


def rotation() -> None:
    org = fixed("grant org", 16)
    old, new, thief = (SigningKey(fixed(f"rotation {n}")) for n in ("old", "new", "thief"))
    request = RotationRequest.make(org_id=org, old_key=old, new_key=new)
    body = encoding.decode(encoding.decode(request.document)[2])
    # The proof of another key under the claimed one: the old key signs, the new key did not.
    forged = sign_document(
        Purpose.ROTATION_SIGNATURE, dict(body, k=thief.verify_key.raw), old
    ).to_bytes()
    vectors = [
        {
            "name": "a field device replaces its signing key",
            "inputs": {
                "org": org.hex(),
                "old_seed": fixed("rotation old").hex(),
                "new_seed": fixed("rotation new").hex(),
            },
            "claim": encoding.encode({k: v for k, v in body.items() if k != "p"}).hex(),
            "document": request.document.hex(),
            "new_device": request.new_device.hex(),
            "verifies": True,
        },
        {
            "name": "the new key is swapped for another (the proof is the first key's)",
            "inputs": {"org": org.hex(), "old_seed": fixed("rotation old").hex()},
            "document": forged.hex(),
            "verifies": False,
        },
    ]
    write(
        "rotation_v1.json",
        "Rotation requests (Ed25519 is deterministic: re-derived exactly): signed by the old "
        "key over {v, s, o, i, k, p}, p being the new key's signature over the canonical CBOR "
        "`claim` (the body without p); a request whose new key was swapped does not verify",
        "§3, §19.7",
        vectors,
    )


GENERATORS = {"grant": grant, "rotation": rotation}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
