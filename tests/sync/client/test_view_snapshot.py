"""A view restored from its own snapshot equals the view rebuilt from the same envelopes.

The snapshot stands for a rebuild only under the trust it was computed under; it must never
re-verify or re-decrypt what it holds, and any doubt about it means a rebuild.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import Envelope, SigningKey, encoding, parse_envelope
from sync.client import (
    CoordinatorView,
    DeviceState,
    SnapshotRefused,
    restore_view,
    seal_edit,
    snapshot_view,
)
from sync.invite import Enrollment, seal_label
from sync.roster import Role
from tests.sync.client.support import ORG, REPORT, Org, content, sealed

OTHER = b"\x01" * 16


def _rebuilt(org: Org, envelopes: list[bytes], enrollments: list[Enrollment]) -> CoordinatorView:
    view = CoordinatorView(
        roster=org.roster, kem_key=org.coord_kem, enrollments=enrollments, history=org.chain
    )
    for data in sorted(envelopes, key=lambda d: (parse_envelope(d).header.device,
                                                 parse_envelope(d).header.seq)):  # fmt: skip
        view.ingest(data)
    return view


def _observed(view: CoordinatorView, envelopes: list[bytes]) -> dict[str, Any]:
    assert view.report_ids() == list(view.reports())
    assert view.report_ids(include_unverified=False) == list(view.reports(include_unverified=False))
    reports = {r for d in envelopes if (r := parse_envelope(d).header.report) is not None}
    devices = {parse_envelope(d).header.device for d in envelopes}
    return {
        "findings": view.findings(),
        "reports": view.reports(),
        "verified": view.reports(include_unverified=False),
        "ids": (view.report_ids(), view.report_ids(include_unverified=False)),
        "verification": {r: view.verification(r) for r in sorted(reports)},
        "watermarks": {d: view.watermark(d) for d in sorted(devices)},
        "envelopes": sorted(view.envelopes),
        "held": sorted(view.held),
    }


def _edit(state: DeviceState, org: Org, key: SigningKey, parents: Any = None, **f: str) -> bytes:
    envelope = seal_edit(
        state, roster=org.roster, signing_key=key, report=REPORT, content=content(**f),
        parents=parents,
    )  # fmt: skip
    return envelope.id


def _outbox(*states: DeviceState) -> list[bytes]:
    return [i.data for s in states for i in s.outbox]


def plain() -> tuple[Org, list[bytes], list[Enrollment]]:
    org = Org()
    return org, sealed(org, 4), []


def forked_chain() -> tuple[Org, list[bytes], list[Enrollment]]:
    org = Org()  # same key, same seqs, other content: two sender keys at seq 1 (a replay)
    return org, sealed(org, 3) + sealed(org, 2), []


def revoked() -> tuple[Org, list[bytes], list[Enrollment]]:
    org = Org()
    envelopes = sealed(org, 4)
    org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=3))
    return org, envelopes, []


def conflict() -> tuple[Org, list[bytes], list[Enrollment]]:
    org = Org()
    field = org.device()
    coord = DeviceState(org_id=ORG, device_id=org.coord.verify_key.key_id)
    first = _edit(field, org, org.field, a="0", b="x")
    _edit(field, org, org.field, (first,), a="field")
    _edit(coord, org, org.coord, (first,), a="coordinator")
    return org, _outbox(field, coord), []


def unverified_and_unknown() -> tuple[Org, list[bytes], list[Enrollment]]:
    org = Org()
    enrolled, stranger = SigningKey.generate(), SigningKey.generate()
    states = [DeviceState(org_id=ORG, device_id=k.verify_key.key_id) for k in (enrolled, stranger)]
    for state, key in zip(states, (enrolled, stranger), strict=True):
        _edit(state, org, key, a=state.device_id.hex())
    invite = b"I" * 16
    label = seal_label("phone", secret=b"s" * 32, invite_id=invite, device_id=states[0].device_id)
    enrollment = Enrollment(ORG, invite, enrolled.verify_key, Role.FIELD, label)
    return org, _outbox(*states) + sealed(org, 1), [enrollment]


def waiting_key() -> tuple[Org, list[bytes], list[Enrollment]]:
    org = Org()
    envelopes = sealed(org, 3)
    return org, envelopes[1:] + sealed(org, 1, OTHER), []  # no sender key for the first chain


CASES: dict[str, Callable[[], tuple[Org, list[bytes], list[Enrollment]]]] = {
    f.__name__: functools.cache(f)
    for f in (plain, forked_chain, revoked, conflict, unverified_and_unknown, waiting_key)
}


FORKED = ("forked_chain", "waiting_key")
"""Cases with two envelopes at one (device, seq): where arrival order could change the view
(a late link of a forked chain now takes the chain in again, `CoordinatorView._replay`)."""


def _feed(view: CoordinatorView, envelopes: list[bytes]) -> None:
    for data in sorted(envelopes, key=lambda d: (parse_envelope(d).header.device,
                                                 parse_envelope(d).header.seq)):  # fmt: skip
        view.ingest(data)


def _restore(org: Org, snapshot: bytes, envelopes: list[bytes], enrollments: list[Enrollment]):
    return restore_view(
        snapshot,
        roster=org.roster,
        kem_key=org.coord_kem,
        envelopes={parse_envelope(d).id: d for d in envelopes},
        enrollments=enrollments,
        history=org.chain,
    )


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=12, deadline=None)
@given(split=st.lists(st.booleans(), min_size=12, max_size=12))
def test_restored_then_fed_equals_rebuilt_from_the_union(case: str, split: list[bool]) -> None:
    org, envelopes, enrollments = CASES[case]()
    before = [
        d for d, early in zip(envelopes, split + [True] * len(envelopes), strict=False) if early
    ]
    first = _rebuilt(org, before, enrollments)
    snapshot = snapshot_view(first)
    restored = _restore(org, snapshot, before, enrollments)
    assert _observed(restored, envelopes) == _observed(first, envelopes)
    assert snapshot_view(restored) == snapshot  # canonical: the same state, the same bytes
    fed = _restore(org, snapshot, envelopes, enrollments)
    _feed(first, [d for d in envelopes if d not in before])  # the live view, as a sync goes on
    assert _observed(fed, envelopes) == _observed(first, envelopes)
    rebuilt = _rebuilt(org, envelopes, enrollments)
    assert _observed(fed, envelopes) == _observed(rebuilt, envelopes)


@pytest.mark.parametrize("case", sorted(FORKED))
def test_a_view_fed_in_two_steps_equals_the_rebuilt_view_even_with_forks(case: str) -> None:
    org, envelopes, enrollments = CASES[case]()
    for late in range(len(envelopes)):
        view = _rebuilt(org, [d for i, d in enumerate(envelopes) if i != late], enrollments)
        _feed(view, [envelopes[late]])
        rebuilt = _rebuilt(org, envelopes, enrollments)
        assert _observed(view, envelopes) == _observed(rebuilt, envelopes)


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_arrival_order_gives_the_view_of_the_set(case: str, data: st.DataObject) -> None:
    # The view is a function of the set of envelopes (sync.client.view, rule 1): a feed in
    # any order, repeats included, shows what the chain-ordered rebuild shows.
    org, envelopes, enrollments = CASES[case]()
    view = _rebuilt(org, [], enrollments)
    for envelope in data.draw(st.permutations(envelopes + envelopes[:2])):
        view.ingest(envelope)
    assert _observed(view, envelopes) == _observed(_rebuilt(org, envelopes, enrollments), envelopes)


def test_the_cases_show_what_they_are_named_for() -> None:
    # Guard against a table of cases that says nothing: each shows its finding or state.
    kinds = {name: {f.kind for f in _rebuilt(*make()).findings()} for name, make in CASES.items()}
    assert kinds["plain"] == set()
    assert "fork" in kinds["forked_chain"]
    assert kinds["revoked"] == {"after-revocation"}
    assert {"pending-admission", "unknown-device"} <= kinds["unverified_and_unknown"]
    assert {"waiting-key", "fork"} <= kinds["waiting_key"]
    org, envelopes, enrollments = CASES["conflict"]()
    state = _rebuilt(org, envelopes, enrollments).report(REPORT)
    assert state is not None and [f.name for f in state.conflicts] == ["a"]


def test_a_restore_verifies_and_decrypts_nothing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    org, envelopes, enrollments = CASES["conflict"]()
    snapshot = snapshot_view(_rebuilt(org, envelopes, enrollments))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-verified")

    monkeypatch.setattr(Envelope, "verify_signature", refuse)
    monkeypatch.setattr("sync.client.view.open_revision", refuse)
    monkeypatch.setattr("sync.client.grants.open_sender_key", refuse)
    restored = _restore(org, snapshot, envelopes, enrollments)
    state = restored.report(REPORT)
    assert state is not None and state.conflicts


def test_a_damaged_or_incomplete_snapshot_is_refused() -> None:
    org, envelopes, enrollments = CASES["plain"]()
    snapshot = snapshot_view(_rebuilt(org, envelopes, enrollments))
    with pytest.raises(SnapshotRefused, match="not given"):
        _restore(org, snapshot, envelopes[1:], enrollments)
    raw = encoding.decode(snapshot)
    with pytest.raises(SnapshotRefused, match="version"):
        _restore(org, encoding.encode({**raw, "v": 2}), envelopes, enrollments)
    with pytest.raises(SnapshotRefused, match="malformed"):
        _restore(org, encoding.encode({**raw, "r": [[b"x"]]}), envelopes, enrollments)
    with pytest.raises(SnapshotRefused):
        _restore(org, snapshot[:-3], envelopes, enrollments)
