"""A grant opens only the epochs it keys (PROTOCOL §19, `sync.client.retrust.open_granted`):
a coordinator who joined late and is granted its predecessors' epochs one grant at a time,
with revisions still arriving, ends with the view of one that had every grant from the start,
and no grant takes every envelope in again (that cost a second first verification)."""

from __future__ import annotations

import random

import pytest

from crypto import KemPrivateKey, SigningKey, open_sender_key, parse_envelope
from sync.client import CoordinatorView, seal_edit
from sync.client.chain import EPOCH_LENGTH
from sync.grant import make_grant
from sync.roster import Member, Role
from tests.sync.client.support import ORG, REPORT, Org, content
from tests.sync.client.test_view_snapshot import _observed

OTHER = b"\x02" * 16


class Joined:
    """A field device writes three epochs sealed to the founder only; a newcomer coordinator
    then joins, and a fourth epoch is sealed to both."""

    def __init__(self) -> None:
        self.org = Org()
        state = self.org.device()
        for epoch in range(3):
            for i in range(3):
                report = REPORT if i % 2 == 0 else OTHER
                seal_edit(state, roster=self.org.roster, signing_key=self.org.field,
                          report=report, content=content(a=f"{epoch}.{i}"))  # fmt: skip
            state.chain_index = EPOCH_LENGTH  # the next revision starts an epoch
        self.newcomer, self.kem = SigningKey.generate(), KemPrivateKey.generate()
        self.org.extend(
            lambda r: r.with_member(
                Member(self.newcomer.verify_key.key_id, self.newcomer.verify_key,
                       Role.COORDINATOR, self.kem.public_key)
            )
        )  # fmt: skip
        seal_edit(state, roster=self.org.roster, signing_key=self.org.field, report=REPORT,
                  content=content(a="after joining"))  # fmt: skip
        self.envelopes = [i.data for i in state.outbox]
        self.keys = [e for d in self.envelopes if (e := parse_envelope(d)).header.kind == "key"]
        assert len(self.keys) == 4

    def grant(self, *epochs: int) -> bytes:
        """The founder's grant of the founder-only epochs ``epochs`` (0, 1, 2) to the newcomer."""
        pairs = [
            (
                self.keys[i],
                open_sender_key(
                    self.keys[i], author=self.org.field.verify_key, recipient=self.org.coord_kem
                ),
            )
            for i in epochs
        ]
        return make_grant(
            org_id=ORG,
            roster_version=self.org.roster.roster.version,
            issued_at=1,
            epochs=pairs,
            recipient=self.kem.public_key,
            signing_key=self.org.coord,
        ).document

    def view(self, grants: tuple[bytes, ...] = ()) -> CoordinatorView:
        return CoordinatorView(
            roster=self.org.roster, kem_key=self.kem, history=self.org.chain, grants=grants
        )


@pytest.mark.parametrize("seed", range(8))
def test_grants_one_at_a_time_give_the_view_of_all_grants_from_the_start(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = Joined()
    rnd = random.Random(seed)
    envelopes = list(world.envelopes)
    rnd.shuffle(envelopes)
    late = envelopes[len(envelopes) // 2 :]  # arrive after the first grant
    everything = world.view((world.grant(0), world.grant(1, 2)))
    for data in world.envelopes:
        everything.ingest(data)

    view = world.view()
    for data in envelopes[: len(envelopes) // 2]:
        view.ingest(data)
    monkeypatch.setattr(view, "_replay", lambda: pytest.fail("a grant took everything again"))
    assert view.add_grants([world.grant(0)])  # a key it lacked, whether its epoch is here yet
    for data in late:
        view.ingest(data)
    view.add_grants([world.grant(1, 2)])
    assert not view.add_grants([world.grant(1, 2)])  # the same grant again: nothing new
    assert _observed(view, world.envelopes) == _observed(everything, world.envelopes)
    assert all(v.verified for v in map(view.verification, (REPORT, OTHER)))
    assert "waiting-key" not in {f.kind for f in view.findings()}


def test_before_any_grant_the_founders_epochs_wait_and_the_shared_one_opens() -> None:
    world = Joined()
    view = world.view()
    for data in world.envelopes:
        view.ingest(data)
    waiting = [f for f in view.findings() if f.kind == "waiting-key"]
    assert len(waiting) == 3  # one per founder-only epoch
    # Only the epoch sealed to the newcomer too opens: one revision of REPORT.
    assert [r.content.fields for r in view.revisions(REPORT)] == [{"a": "after joining"}]
    assert view.revisions(OTHER) == []
    view.add_grants([world.grant(0, 1, 2)])
    assert [f for f in view.findings() if f.kind == "waiting-key"] == []


def test_a_grant_of_a_roster_version_seen_later_opens_its_epochs_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§19.3: a grant naming a roster version this view has not verified waits; when the
    roster arrives it is verified again and opens its epochs, without a replay."""
    world = Joined()
    early = world.view()
    for data in world.envelopes:
        early.ingest(data)
    another = SigningKey.generate().verify_key  # a roster version the view has not seen
    world.org.extend(lambda r: r.with_member(Member(another.key_id, another, Role.FIELD)))
    grant = world.grant(0, 1, 2)  # signed as a coordinator of the newest version
    assert not early.add_grants([grant])
    assert "waiting-key" in {f.kind for f in early.findings()}
    monkeypatch.setattr(early, "_replay", lambda: pytest.fail("the retried grant replayed"))
    early.update_trust(world.org.roster)
    everything = world.view((grant,))
    for data in world.envelopes:
        everything.ingest(data)
    assert _observed(early, world.envelopes) == _observed(everything, world.envelopes)
    assert "waiting-key" not in {f.kind for f in early.findings()}
