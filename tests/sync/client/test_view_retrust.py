"""A view brought under new trust equals the view rebuilt under it, and re-judges only the
devices whose standing changed (sync/client/retrust.py).

A roster change (a device admitted or revoked, an enrollment forgotten, more roster
history) must not cost a rebuild of the whole view, and must never leave a verdict of the
old trust behind: a revoked device's later revisions are flagged, an admitted device's
content is verified, and nobody else's is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crypto import Envelope, KemPrivateKey, SigningKey, encoding, parse_envelope
from sync.client import (
    DeviceState,
    SnapshotRefused,
    restore_view,
    retrust,
    seal_edit,
    snapshot_view,
)
from sync.invite import Enrollment
from sync.roster import Member, Role, SignedRoster
from tests.sync.client.support import ORG, Org, content
from tests.sync.client.test_view_snapshot import CASES, FORKED, _observed, _rebuilt

Change = Callable[[Org, list[Enrollment]], tuple[SignedRoster, list[Enrollment]]]


def _revoke(org: Org, enrollments: list[Enrollment]) -> tuple[SignedRoster, list[Enrollment]]:
    return org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=2)), enrollments


def _admit(org: Org, enrollments: list[Enrollment]) -> tuple[SignedRoster, list[Enrollment]]:
    roster = org.roster
    for e in enrollments:
        member = Member(e.device_id, e.signing_key, Role.FIELD)
        roster = org.extend(lambda r, m=member: r.with_member(m))
    return roster, enrollments


def _forget(org: Org, enrollments: list[Enrollment]) -> tuple[SignedRoster, list[Enrollment]]:
    return org.roster, []


def _unchanged(org: Org, enrollments: list[Enrollment]) -> tuple[SignedRoster, list[Enrollment]]:
    return org.roster, enrollments


CHANGES: dict[str, Change] = {
    "revoke": _revoke,
    "admit": _admit,
    "forget-enrollment": _forget,
    "unchanged": _unchanged,
}


def _case(case: str) -> tuple[Org, list[bytes], list[Enrollment]]:
    org, envelopes, enrollments = CASES[case].__wrapped__()  # a fresh org: changes extend it
    return org, envelopes, enrollments


def _history(org: Org) -> dict[int, Any]:
    return {v.roster.version: v.roster for v in org.chain}


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("case", sorted(set(CASES) - set(FORKED)))
def test_a_live_view_under_new_trust_equals_the_view_rebuilt_under_it(case: str, change: str):
    org, envelopes, enrollments = _case(case)
    view = _rebuilt(org, envelopes, enrollments)
    roster, enrolled = CHANGES[change](org, enrollments)
    retrust(view, roster, enrolled, _history(org))
    assert _observed(view, envelopes) == _observed(_rebuilt(org, envelopes, enrolled), envelopes)


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("case", sorted(set(CASES) - set(FORKED)))
def test_a_snapshot_restored_under_new_trust_equals_the_view_rebuilt_under_it(
    case: str, change: str
) -> None:
    org, envelopes, enrollments = _case(case)
    snapshot = snapshot_view(_rebuilt(org, envelopes, enrollments))
    roster, enrolled = CHANGES[change](org, enrollments)
    restored = restore_view(
        snapshot, roster=roster, kem_key=org.coord_kem, enrollments=enrolled,
        envelopes={parse_envelope(d).id: d for d in envelopes}, history=org.chain,
    )  # fmt: skip
    rebuilt = _rebuilt(org, envelopes, enrolled)
    assert _observed(restored, envelopes) == _observed(rebuilt, envelopes)
    assert snapshot_view(restored) == snapshot_view(rebuilt)  # the same state, the same bytes


def _two_devices() -> tuple[Org, list[bytes], Any]:
    """The field device and a second field device, each editing both reports twice."""
    org = Org()
    other = SigningKey.generate()
    org.extend(lambda r: r.with_member(Member(other.verify_key.key_id, other.verify_key,
                                              Role.FIELD)))  # fmt: skip
    envelopes = []
    for key in (org.field, other):
        state = DeviceState(org_id=ORG, device_id=key.verify_key.key_id)
        for i in range(4):
            seal_edit(state, roster=org.roster, signing_key=key, report=bytes([i % 2]) * 16,
                      content=content(a=f"{key.verify_key.key_id.hex()[:4]}{i}"))  # fmt: skip
        envelopes += [item.data for item in state.outbox]
    return org, envelopes, other


def test_a_revocation_re_verifies_only_the_revoked_device_s_envelopes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org, envelopes, other = _two_devices()
    view = _rebuilt(org, envelopes, [])
    view.changed.clear()
    checked: list[bytes] = []
    verify = Envelope.verify_signature

    def counting(self: Envelope, key: Any) -> None:
        checked.append(self.header.device)
        verify(self, key)

    monkeypatch.setattr(Envelope, "verify_signature", counting)
    roster = org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=3))
    touched = retrust(view, roster, [], _history(org))
    field = org.field.verify_key.key_id
    assert touched == {field}
    assert set(checked) == {field}  # its five envelopes, and nobody else's
    assert view.changed == {bytes(16), b"\x01" * 16}  # the reports it wrote in
    states = {r: view.verification(r).state for r in view.report_ids()}
    assert states == {bytes(16): "after-revocation", b"\x01" * 16: "after-revocation"}
    assert _observed(view, envelopes) == _observed(_rebuilt(org, envelopes, []), envelopes)
    checked.clear()
    newcomer = SigningKey.generate().verify_key  # a device with no envelope yet
    view.update_trust(org.extend(lambda r: r.with_member(Member(newcomer.key_id, newcomer,
                                                                Role.FIELD))))  # fmt: skip
    assert checked == []


def test_a_snapshot_under_another_coordinator_key_is_refused() -> None:
    org, envelopes, enrollments = _case("plain")
    snapshot = snapshot_view(_rebuilt(org, envelopes, enrollments))
    with pytest.raises(SnapshotRefused, match="coordinator key"):
        restore_view(snapshot, roster=org.roster, kem_key=KemPrivateKey.generate(),
                     envelopes={parse_envelope(d).id: d for d in envelopes},
                     history=org.chain)  # fmt: skip
    raw = encoding.decode(snapshot)
    with pytest.raises(SnapshotRefused, match="malformed"):
        restore_view(encoding.encode({**raw, "sd": [[b"x"]], "t": b""}), roster=org.roster,
                     kem_key=org.coord_kem, envelopes={parse_envelope(d).id: d for d in envelopes},
                     history=org.chain)  # fmt: skip


def test_a_view_that_adopted_a_newer_roster_is_saved_as_the_rebuilt_view_would_be() -> None:
    org, envelopes, enrollments = _case("plain")
    view = _rebuilt(org, envelopes, enrollments)
    view.update_trust(org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=2)))
    assert snapshot_view(view) == snapshot_view(_rebuilt(org, envelopes, enrollments))
