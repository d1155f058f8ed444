"""What a grant costs the coordinator it keys (PROTOCOL §19, `sync.client.retrust.open_granted`).

A field device writes N revisions in epochs of 100, sealed to the founder only; a newcomer
coordinator joins, takes every envelope in (all of them wait for a key), then is granted
every epoch in one grant. Measured in one run: the grant opening only its epochs, against
taking every envelope in again (what `add_grants` did before). Prints JSON.

    .venv/bin/python bench/bench_grant_open.py [--revisions N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto import KemPrivateKey, SigningKey, open_sender_key, parse_envelope  # noqa: E402
from sync.client import CoordinatorView, seal_edit  # noqa: E402
from sync.client.chain import EPOCH_LENGTH  # noqa: E402
from sync.grant import make_grant  # noqa: E402
from sync.roster import Member, Role  # noqa: E402
from tests.sync.client.support import ORG, Org, content  # noqa: E402

REPORTS = 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--revisions", type=int, default=10_000)
    n = parser.parse_args().revisions
    org, reports = Org(), [bytes([i % 256, i // 256]) * 8 for i in range(REPORTS)]
    state = org.device()
    for i in range(n):
        seal_edit(state, roster=org.roster, signing_key=org.field, report=reports[i % REPORTS],
                  content=content(a=str(i)))  # fmt: skip
        if i % 100 == 99:
            state.chain_index = EPOCH_LENGTH  # the next revision starts an epoch
    newcomer, kem = SigningKey.generate(), KemPrivateKey.generate()
    org.extend(
        lambda r: r.with_member(
            Member(newcomer.verify_key.key_id, newcomer.verify_key, Role.COORDINATOR,
                   kem.public_key)
        )
    )  # fmt: skip
    envelopes = [i.data for i in state.outbox]
    keys = [e for d in envelopes if (e := parse_envelope(d)).header.kind == "key"]
    founder = org.coord_kem
    pairs = [(k, open_sender_key(k, author=org.field.verify_key, recipient=founder)) for k in keys]
    grant = make_grant(
        org_id=ORG,
        roster_version=org.roster.roster.version,
        issued_at=1,
        epochs=pairs,
        recipient=kem.public_key,
        signing_key=org.coord,
    ).document

    def joined() -> CoordinatorView:
        view = CoordinatorView(roster=org.roster, kem_key=kem, history=org.chain)
        for data in envelopes:
            view.ingest(data)
        return view

    def opened(view: CoordinatorView) -> int:
        return sum(len(view.revisions(r)) for r in reports)

    view = joined()
    start = time.perf_counter()
    view.add_grants([grant])
    targeted = time.perf_counter() - start
    again = joined()
    again.grants.add(grant)
    start = time.perf_counter()
    again._replay()
    replay = time.perf_counter() - start
    assert opened(view) == opened(again) == n
    print(json.dumps({
        "revisions": n,
        "epochs_granted": len(keys),
        "grant_opens_its_epochs_s": round(targeted, 3),
        "every_envelope_again_s": round(replay, 3),
        "ratio": round(targeted / replay, 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
