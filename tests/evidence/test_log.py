"""The exporter's log proofs (PROTOCOL §22.5, §17.2): the smallest kept checkpoint that holds a
revision dates it, one batch proof per checkpoint, and a checkpoint the kept leaves do not hash
to (another log, a restored server) is never used."""

from __future__ import annotations

from crypto import SigningKey
from sync.checkpoint import Checkpoint
from sync.evidence import prove_in_log
from sync.merkle import leaf_hash, root_of
from tests.evidence.factory import ORG, T0, build_org, fixed

ORG_FIXTURE = build_org()


def _signed(leaves: list[bytes], at: int, key: SigningKey) -> bytes:
    root = root_of([leaf_hash(e) for e in leaves])
    return Checkpoint(ORG, len(leaves), root, at).sign(key).to_bytes()


def test_each_revision_is_proven_in_the_smallest_checkpoint_that_holds_it() -> None:
    org = ORG_FIXTURE
    a1, a2, a3 = (org.envelopes[n].id for n in ("a1", "a2", "a3"))
    proofs = prove_in_log(
        org.leaves, org.checkpoints, [a3, a1, a2], org_id=ORG, server_key=org.server.verify_key
    )
    assert [[seq for seq, _ in p.leaves] for p in proofs] == [[2], [4], [6]]
    assert [Checkpoint.size_of(p.checkpoint) for p in proofs] == [3, 5, 6]


def test_a_checkpoint_of_another_log_or_key_is_not_used_and_unknown_revisions_get_none() -> None:
    org = ORG_FIXTURE
    a1 = org.envelopes["a1"].id
    forked = _signed([fixed("other leaf"), *org.leaves[1:3]], T0 + 50, org.server)
    foreign = _signed(org.leaves[:3], T0 + 60, SigningKey(fixed("another server")))
    kept = [forked, foreign, *org.checkpoints]
    proofs = prove_in_log(org.leaves, kept, [a1], org_id=ORG, server_key=org.server.verify_key)
    assert [p.checkpoint for p in proofs] == [org.checkpoints[0]]
    none = prove_in_log(
        org.leaves, kept, [fixed("never logged")], org_id=ORG, server_key=org.server.verify_key
    )
    assert none == ()
    beyond = prove_in_log(
        org.leaves[:2], org.checkpoints, [a1], org_id=ORG, server_key=org.server.verify_key
    )
    assert beyond == ()  # no kept checkpoint is within the leaves held
