"""The structural push rules of sync/dag.py (docs/PROTOCOL.md §8.3, rules D1-D6), pure."""

from __future__ import annotations

import secrets

import pytest
from dag_memory import ORG, MemoryStore, Writer

from sync.dag import Candidate, advance_watermark, holes
from sync.messages import ItemStatus

S = ItemStatus


def statuses(plan) -> list[ItemStatus]:
    return [o.status for o in plan.outcomes]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def writer() -> Writer:
    return Writer()


def test_d6_created_items_get_consecutive_server_sequences(store, writer) -> None:
    report = secrets.token_bytes(16)
    k = writer.key_envelope()
    a = writer.revision(report, [])
    b = writer.revision(report, [a.id])
    plan = store.push(writer.device_id, [k, a, b])
    assert statuses(plan) == [S.CREATED] * 3
    assert [o.server_seq for o in plan.outcomes] == [1, 2, 3]
    assert store.heads[report] == {b.id}


def test_d6_key_envelopes_have_no_report_and_no_heads(store, writer) -> None:
    k = writer.key_envelope()
    plan = store.push(writer.device_id, [k])
    assert statuses(plan) == [S.CREATED] and plan.heads == {}
    assert store.rows[k.id].report_id is None


def test_d2_duplicates_return_the_original_sequence_also_within_a_batch(store, writer) -> None:
    k = writer.key_envelope()
    a = writer.revision(secrets.token_bytes(16), [])
    store.push(writer.device_id, [k, a])
    plan = store.push(writer.device_id, [a, k, a])
    assert statuses(plan) == [S.DUPLICATE] * 3
    assert [o.server_seq for o in plan.outcomes] == [2, 1, 2]
    assert plan.inserts == [] and store.last_seq == 2
    fresh = MemoryStore()
    plan = fresh.push(writer.device_id, [k, k])
    assert statuses(plan) == [S.CREATED, S.DUPLICATE]
    assert plan.outcomes[1].server_seq == plan.outcomes[0].server_seq


def test_d5_missing_parents_stores_nothing_and_lists_them(store, writer) -> None:
    report = secrets.token_bytes(16)
    k = writer.key_envelope()
    a = writer.revision(report, [])
    b = writer.revision(report, [a.id])
    plan = store.push(writer.device_id, [k, b])
    assert statuses(plan) == [S.CREATED, S.MISSING_PARENTS]
    assert plan.outcomes[1].missing == (a.id,) and plan.outcomes[1].status.retryable
    assert b.id not in store.rows
    assert statuses(store.push(writer.device_id, [a, b])) == [S.CREATED, S.CREATED]


def test_d6_two_heads_is_a_conflict_and_a_merge_resolves_it(store) -> None:
    one, two = Writer(), Writer()
    report = secrets.token_bytes(16)
    k1, k2 = one.key_envelope(), two.key_envelope()
    root = one.revision(report, [])
    store.push(one.device_id, [k1, root])
    left = one.revision(report, [root.id])
    right = two.revision(report, [root.id])
    assert statuses(store.push(one.device_id, [left])) == [S.CREATED]
    plan = store.push(two.device_id, [k2, right])
    assert statuses(plan) == [S.CREATED, S.CONFLICT]
    assert set(plan.outcomes[1].heads) == {left.id, right.id}
    merge = one.revision(report, [left.id, right.id])
    assert statuses(store.push(one.device_id, [merge])) == [S.CREATED]
    assert store.heads[report] == {merge.id}


def test_d6_a_branch_off_an_old_revision_never_discards_the_newer_one(store, writer) -> None:
    report = secrets.token_bytes(16)
    k = writer.key_envelope()
    a = writer.revision(report, [])
    b = writer.revision(report, [a.id])
    c = writer.revision(report, [a.id])  # concurrent with b, from the same device
    plan = store.push(writer.device_id, [k, a, b, c])
    assert statuses(plan) == [S.CREATED, S.CREATED, S.CREATED, S.CONFLICT]
    assert store.heads[report] == {b.id, c.id}


@pytest.mark.parametrize("where", ["same_seq", "prev_mismatch", "next_names_other_prev"])
def test_d4_equivocation_is_evidence_and_terminal(store, where) -> None:
    w = Writer()
    report = secrets.token_bytes(16)
    k = w.key_envelope()
    a = w.revision(report, [])
    if where == "same_seq":
        w.fork_at(1, k.id)
        bad = w.revision(report, [])  # another envelope at seq 2
        first = [k, a]
    elif where == "prev_mismatch":
        w.fork_at(2, secrets.token_bytes(32))
        bad = w.revision(report, [a.id])  # seq 3 whose prev is not a
        first = [k, a]
    else:
        b = w.revision(secrets.token_bytes(16), [])  # seq 3, prev = a (a is withheld)
        w.fork_at(1, k.id)
        bad = w.revision(secrets.token_bytes(16), [])  # another seq 2; stored seq 3 names a
        first = [k, b]
        store.push(w.device_id, first)
        first = []
    if first:
        store.push(w.device_id, first)
    plan = store.push(w.device_id, [bad])
    assert statuses(plan) == [S.EQUIVOCATION]
    assert plan.flag_device and bad.id in store.evidence and bad.id not in store.rows
    assert not plan.outcomes[0].status.retryable
    # Pushed again: the same answer, evidence kept once.
    assert statuses(store.push(w.device_id, [bad])) == [S.EQUIVOCATION]
    assert len(store.evidence) == 1


def test_d3_revoked_device_after_its_point(store, writer) -> None:
    k = writer.key_envelope()
    a = writer.revision(secrets.token_bytes(16), [])
    store.revoked[writer.device_id] = 1
    plan = store.push(writer.device_id, [k, a])
    assert statuses(plan) == [S.CREATED, S.REVOKED]
    assert not plan.outcomes[1].status.retryable
    # Something stored before the revocation is still a duplicate, not "revoked".
    store.revoked.clear()
    store.push(writer.device_id, [a])
    store.revoked[writer.device_id] = 1
    assert statuses(store.push(writer.device_id, [a])) == [S.DUPLICATE]


def test_d1_invalid_items_wrong_org_device_roster_signature_junk(store, writer) -> None:
    k = writer.key_envelope()
    other = Writer()
    ko = other.key_envelope()
    foreign_org = writer.revision(secrets.token_bytes(16), [], org=secrets.token_bytes(16))
    plan = store.push(writer.device_id, [b"junk", ko, foreign_org, k])
    assert statuses(plan) == [S.INVALID, S.INVALID, S.INVALID, S.CREATED]
    assert plan.outcomes[0].envelope_id is None
    assert "device" in (plan.outcomes[1].detail or "")
    assert "organisation" in (plan.outcomes[2].detail or "")
    store.roster_version = 0  # nothing the envelope names exists
    assert statuses(store.push(writer.device_id, [writer.key_envelope()])) == [S.INVALID]


def test_d1_bad_signature_is_invalid(writer) -> None:
    from sync.dag import DeviceView, Known, classify

    k = writer.key_envelope()
    plan = classify(
        [Candidate(k, k.to_bytes(), signature_ok=False)],
        org_id=ORG,
        device=DeviceView(writer.device_id),
        known=Known({}, {}, {}, 1),
        last_seq=0,
    )
    assert statuses(plan) == [S.INVALID] and plan.inserts == []


def test_d1_parent_from_another_report_is_invalid(store, writer) -> None:
    k = writer.key_envelope()
    a = writer.revision(secrets.token_bytes(16), [])
    b = writer.revision(secrets.token_bytes(16), [a.id])
    assert statuses(store.push(writer.device_id, [k, a, b])) == [S.CREATED, S.CREATED, S.INVALID]
    c = writer.revision(secrets.token_bytes(16), [k.id])  # a key envelope is no parent
    assert statuses(store.push(writer.device_id, [c])) == [S.INVALID]


def test_watermark_advances_only_over_contiguous_sequences() -> None:
    assert advance_watermark(0, [1, 2, 4]) == 2
    assert advance_watermark(2, [4, 5]) == 2
    assert advance_watermark(2, [3, 4, 5]) == 5
    assert holes(2, [4, 7, 8, 10]) == [(3, 3), (5, 6), (9, 9)]
    assert holes(5, []) == []
