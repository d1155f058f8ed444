"""Envelopes sealed to a roster the coordinator knew superseded (PROTOCOL §18.4)."""

from __future__ import annotations

from crypto import KemPrivateKey, SigningKey, parse_envelope
from sync.client import StaleRosterSeen
from sync.client.staleness import Stored, first_known, stale_roster
from sync.roster import Member, Role
from tests.sync.client.support import Org, sealed


def _history(org: Org) -> dict:
    return {v.roster.version: v.roster for v in org.chain}


def _sealed(org: Org, n: int) -> list:
    """``n`` revisions by the field device, sealed to the newest roster of ``org``, parsed."""
    return [parse_envelope(data) for data in sealed(org, n)]


def _with_a_second_coordinator_removed() -> tuple[Org, list]:
    org = Org()  # v1 genesis, v2 with the field device
    deputy = SigningKey.generate()
    org.extend(
        lambda r: r.with_member(
            Member(
                deputy.verify_key.key_id,
                deputy.verify_key,
                Role.COORDINATOR,
                KemPrivateKey.generate().public_key,
            )
        )
    )  # v3
    sealed_to_v3 = _sealed(org, 2)  # sealed to both coordinators
    org.extend(lambda r: r.revoke(deputy.verify_key.key_id, after_seq=0))  # v4: deputy out
    return org, sealed_to_v3


def test_an_envelope_stored_after_the_removal_was_known_is_stale() -> None:
    """PROTOCOL §18.4: sealed to v3, stored at seq 12 > known(v4) = 10: stale-roster."""
    org, envelopes = _with_a_second_coordinator_removed()
    stored = [Stored(11 + i, e.id, e.header) for i, e in enumerate(envelopes)]
    findings = stale_roster(stored, _history(org), {3: 5, 4: 10})
    assert findings == [
        StaleRosterSeen(e.id, e.header.device, 3, 4, 11 + i) for i, e in enumerate(envelopes)
    ]


def test_an_envelope_stored_before_the_removal_was_known_is_not_flagged() -> None:
    """PROTOCOL §18.4: at or below known(v4) the server may have stored it before the
    removal reached it: an honest device is never flagged."""
    org, envelopes = _with_a_second_coordinator_removed()
    stored = [Stored(8 + i, e.id, e.header) for i, e in enumerate(envelopes)]  # seqs 8-10
    assert stale_roster(stored, _history(org), {4: 10}) == []


def test_a_roster_change_that_removes_no_coordinator_flags_nothing() -> None:
    """PROTOCOL §18.4: only a removed coordinator exposes content; a new field device does not."""
    org = Org()
    envelopes = _sealed(org, 1)  # sealed to v2
    org.extend(
        lambda r: r.with_member(Member(b"F" * 16, SigningKey.generate().verify_key, Role.FIELD))
    )  # v3 adds a field device
    stored = [Stored(50, e.id, e.header) for e in envelopes]
    assert stale_roster(stored, _history(org), {3: 1}) == []


def test_each_version_is_first_known_at_the_log_size_of_the_sync_that_first_held_it() -> None:
    """PROTOCOL §18.4: ``known(v)`` is set once, never moved."""
    org, _ = _with_a_second_coordinator_removed()
    assert first_known(_history(org), {1: 0, 2: 0, 3: 4}, 9) == {4: 9}
    assert first_known(_history(org), {1: 0, 2: 0, 3: 4, 4: 9}, 30) == {}
