"""Generate the recovery key vectors: recovery_v1.json (PROTOCOL §20).

Run from the repository root:  .venv/bin/python tests/vectors/generate_recovery.py

Same conventions as generate.py (whose `fixed` labels and `write` layout it reuses).  The key
derivation and the roster chain are deterministic and rewritten identically; the SLIP-39
shares are not (the library draws the split's identifier and polynomial itself, as it
should), so they are recorded to be combined, not re-made: any 3 of the 5 give the master
secret.  The tests never run this script (tests/sync/test_recovery_key.py).
"""

from __future__ import annotations

import sys
from typing import Any

from generate import ZERO, fixed, main, write

from crypto import KemPrivateKey, SigningKey
from crypto.recovery import RecoveryKey, split_master_secret
from sync.recovery import RecoveryLocator, public_key, restore_roster, setup_roster
from sync.roster import Member, Role, Roster

SECTION = "§5.1, §5.2, §20"


def _member(key: SigningKey, kem: KemPrivateKey) -> Member:
    return Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)


def recovery() -> None:
    master, org = fixed("recovery master"), fixed("org", 16)
    key = RecoveryKey.derive(master, org)
    derivation = {
        "type": "derivation",
        "master_secret": master.hex(),
        "org": org.hex(),
        "signing_seed": key.signing_key.private_bytes().hex(),
        "signing_public": key.signing_key.verify_key.raw.hex(),
        "key_id": key.signing_key.verify_key.key_id.hex(),
        "hpke_seed": key.kem_key.private_bytes().hex(),
        "hpke_public": key.kem_key.public_key.raw.hex(),
        "hpke_key_id": key.kem_key.public_key.key_id.hex(),
    }
    shares = {
        "type": "shares",
        "master_secret": master.hex(),
        "threshold": 3,
        "shares": split_master_secret(master, threshold=3, shares=5),
    }
    founder, founder_kem = SigningKey(fixed("coordinator 0")), KemPrivateKey(fixed("kem 0"))
    newcomer, newcomer_kem = SigningKey(fixed("coordinator 9")), KemPrivateKey(fixed("kem 9"))
    server = SigningKey(fixed("server"))
    v1 = Roster(org, 1, ZERO, server.verify_key, (_member(founder, founder_kem),)).sign(founder)
    v2 = setup_roster(v1, public_key(key)).sign(founder)
    v3 = restore_roster(
        v2,
        recovery=key,
        newcomer=_member(newcomer, newcomer_kem),
        revoke={founder.verify_key.key_id: 2},
    )
    chain = {
        "type": "roster",
        "inputs": {
            "org": org.hex(),
            "server_seed": fixed("server").hex(),
            "founder_seed": fixed("coordinator 0").hex(),
            "founder_kem_seed": fixed("kem 0").hex(),
            "newcomer_seed": fixed("coordinator 9").hex(),
            "newcomer_kem_seed": fixed("kem 9").hex(),
            "revoked_after": 2,
        },
        "chain": [
            {
                "version": s.roster.version,
                "signer": s.signer.hex(),
                "signed": s.to_bytes().hex(),
                "fingerprint": s.hash.hex(),
                "recipients": sorted(k.key_id.hex() for k in s.roster.recipients()),
            }
            for s in (v1, v2, v3)
        ],
        "locator": RecoveryLocator("https://sealbox.example", org, v2.hash).encode(),
    }
    vectors: list[dict[str, Any]] = [derivation, shares, chain]
    write(
        "recovery_v1.json",
        "The recovery key: derivation from a fixed master secret, 3-of-5 SLIP-39 shares of it,"
        " a roster chain that sets it up (v2) and a restore version it signs (v3)",
        SECTION,
        vectors,
    )


GENERATORS = {"recovery": recovery}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
