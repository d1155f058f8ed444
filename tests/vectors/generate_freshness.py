"""Generate the roster freshness statement vectors: freshness_v1.json (PROTOCOL §18).

Run from the repository root:  .venv/bin/python tests/vectors/generate_freshness.py

Same conventions as generate.py (whose `fixed` labels and `write` layout it reuses): every
input is derived from a fixed label or read from a committed vector file (the roster chain of
roster_v1.json), re-running rewrites identical files, and the tests never run this script;
they compare the code against the committed file (tests/sync/test_freshness.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from generate import HERE, fixed, main, write

from crypto import Purpose, SigningKey, digest
from sync.freshness import DEFAULT_HORIZON, MAX_SKEW, Freshness
from sync.roster import SignedRoster

SECTION = "§3, §18"
ISSUED_AT = 1_780_000_000


def roster_chain() -> list[SignedRoster]:
    vectors = json.loads((HERE / "roster_v1.json").read_text(encoding="utf-8"))["vectors"]
    return [SignedRoster.parse(bytes.fromhex(v["signed"])) for v in vectors[0]["chain"]]


def freshness() -> None:
    chain = roster_chain()
    vectors: list[dict[str, Any]] = []
    for version, signer_label, lifetime in (
        (3, "coordinator 1", 14 * 86400),
        (2, "coordinator 0", 3600),
    ):
        roster = chain[version - 1]
        signer = SigningKey(fixed(signer_label))
        statement = Freshness.issue(roster, now=ISSUED_AT + version, lifetime=lifetime)
        document = statement.sign(signer)
        t, x = statement.issued_at, statement.expires_at
        checks = [
            {"now": now, "horizon": DEFAULT_HORIZON, "fresh": statement.is_fresh(now)}
            for now in sorted(
                {
                    t - MAX_SKEW - 1,
                    t - MAX_SKEW,
                    t,
                    t + DEFAULT_HORIZON - 1,
                    t + DEFAULT_HORIZON,
                    x - 1,
                    x,
                }
            )
        ]
        vectors.append(
            {
                "inputs": {
                    "signer_seed": fixed(signer_label).hex(),
                    "org": statement.org_id.hex(),
                    "version": version,
                    "fingerprint": roster.hash.hex(),
                    "issued_at": t,
                    "expires_at": x,
                },
                "body": document.body.hex(),
                "document": document.to_bytes().hex(),
                "digest": digest(Purpose.FRESHNESS_SIGNATURE, document.body).hex(),
                "verifies_against": version,
                "refused_against": [v for v in (1, 2, 3) if v != version],
                "fresh_at": checks,
            }
        )
    write(
        "freshness_v1.json",
        "Coordinator-signed roster freshness statements for versions 3 and 2 of roster_v1.json's "
        "chain: the body, the signed document, the digest of the signed message, the roster "
        "version it verifies against (and those it does not), and whether it is fresh at given "
        "device times (the default 7-day horizon, 1-hour skew)",
        SECTION,
        vectors,
    )


GENERATORS = {"freshness": freshness}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
