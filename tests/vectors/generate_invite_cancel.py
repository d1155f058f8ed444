"""Generate the invite cancellation vectors: invite_cancel_v1.json (PROTOCOL §3, §6.7).

Run from the repository root:  .venv/bin/python tests/vectors/generate_invite_cancel.py

Same conventions as generate.py (whose `fixed` labels and `write` layout it reuses): every
input is derived from a fixed label or read from a committed vector file (the roster chain
and keys of roster_v1.json), re-running rewrites identical files, and the tests never run
this script; they compare the code against the committed file
(tests/sync/test_invite_cancel.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from generate import HERE, fixed, main, write

from crypto import Purpose, SigningKey, digest, sign_document
from sync.invite import InviteCancel

SECTION = "§3, §6.7"


def _roster() -> dict[str, Any]:
    vectors = json.loads((HERE / "roster_v1.json").read_text(encoding="utf-8"))["vectors"]
    return dict(vectors[0])


def invite_cancel() -> None:
    roster = _roster()
    org = bytes.fromhex(roster["inputs"]["org"])
    seeds = [bytes.fromhex(s) for s in roster["inputs"]["coordinator_seeds"]]
    vectors: list[dict[str, Any]] = []
    for n, seed in enumerate(seeds[:2]):
        invite_id = fixed(f"cancelled invite {n}", 16)
        document = InviteCancel(org, invite_id).sign(SigningKey(seed))
        vectors.append(
            {
                "inputs": {
                    "signer_seed": seed.hex(),
                    "org": org.hex(),
                    "invite_id": invite_id.hex(),
                },
                "body": document.body.hex(),
                "document": document.to_bytes().hex(),
                "digest": digest(Purpose.INVITE_CANCEL_SIGNATURE, document.body).hex(),
                "cancels": invite_id.hex(),
            }
        )
    key = SigningKey(seeds[0])
    invite_id = fixed("cancelled invite 0", 16)
    field = SigningKey(bytes.fromhex(roster["inputs"]["field_seed"]))
    refused = [
        ("signed by a field device", sign_document(
            Purpose.INVITE_CANCEL_SIGNATURE, {"o": org, "i": invite_id}, field)),
        ("signed as an invite, not a cancellation", sign_document(
            Purpose.INVITE_SIGNATURE, {"o": org, "i": invite_id}, key)),
        ("another organisation", InviteCancel(fixed("other org", 16), invite_id).sign(key)),
        ("an extra key", sign_document(
            Purpose.INVITE_CANCEL_SIGNATURE, {"o": org, "i": invite_id, "t": 1}, key)),
        ("a 15-byte invite id", sign_document(
            Purpose.INVITE_CANCEL_SIGNATURE, {"o": org, "i": invite_id[:15]}, key)),
        ("no org", sign_document(Purpose.INVITE_CANCEL_SIGNATURE, {"i": invite_id}, key)),
    ]  # fmt: skip
    for why, document in refused:
        vectors.append({"refused": why, "document": document.to_bytes().hex(), "cancels": None})
    write(
        "invite_cancel_v1.json",
        "Coordinator-signed invite cancellations {o, i} for roster_v1.json's organisation: the "
        "body, the signed document and the digest of the signed message, each checked against "
        "the newest version of roster_v1.json's chain (which invite it cancels); then documents "
        "a reader refuses (cancels nothing)",
        SECTION,
        vectors,
    )


GENERATORS = {"invite_cancel": invite_cancel}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
