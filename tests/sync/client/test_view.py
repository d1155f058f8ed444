"""The coordinator's verified view: a function of the set of envelopes (PROTOCOL §4.5, §15.5)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    SigningKey,
    message_key_at,
    parse_envelope,
    seal_revision,
    seal_sender_key,
)
from crypto.envelope import _seal_sender_key_from_parts
from sync.client import CoordinatorView, DeviceState, seal_edit
from sync.roster import Member, Role
from tests.sync.client.support import ORG, REPORT, Org, content, field_of, sealed


@settings(max_examples=30)
@given(st.permutations(range(5)))
def test_view_state_does_not_depend_on_feed_order(order: list[int]) -> None:
    # PROTOCOL §15.5 item 3.
    org = Org()
    envelopes = sealed(org, 4)
    view = org.view()
    for i in order:
        view.ingest(envelopes[i])
    assert field_of(view, REPORT, "a").value == "3"
    assert view.findings() == []
    assert view.verification(REPORT).verified


def test_an_envelope_seen_twice_is_taken_once() -> None:
    org = Org()
    envelopes = sealed(org, 1)
    view = org.view()
    assert [view.ingest(e) for e in envelopes + envelopes] == [True, True, False, False]


def test_gaps_in_a_device_chain_are_findings() -> None:
    # PROTOCOL §4.5, §15.5 item 2.
    org = Org()
    envelopes = sealed(org, 4)
    view = org.view()
    for data in envelopes[:2] + envelopes[3:]:
        view.ingest(data)
    assert [(f.kind, f.seq) for f in view.findings()] == [("gap", 3)]
    assert view.watermark(org.field.verify_key.key_id) == 2


def test_a_fork_in_a_device_chain_is_a_finding() -> None:
    org = Org()
    one = sealed(org, 2)
    # Same key, same seqs, different content: an equivocating (or cloned) device.
    two = sealed(org, 2)
    view = org.view()
    for data in one + two[2:]:
        view.ingest(data)
    assert "fork" in {f.kind for f in view.findings()}


def test_revisions_signed_after_revocation_are_flagged_and_not_shown() -> None:
    # PROTOCOL §15.5 item 2: flagged after revoked_after, kept out of the merge.
    org = Org()
    envelopes = sealed(org, 3)  # seqs 1..4
    org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=3))
    view = org.view()
    for data in envelopes:
        view.ingest(data)
    assert field_of(view, REPORT, "a").value == "1"
    assert [(f.kind, f.seq) for f in view.findings()] == [("after-revocation", 4)]
    assert view.verification(REPORT).state == "after-revocation"


def test_a_forged_revision_is_refused() -> None:
    org = Org()
    envelopes = sealed(org, 1)
    view = org.view()
    env = parse_envelope(envelopes[1])
    tampered = env.to_bytes().replace(env.signature, bytes(64))
    assert not view.ingest(tampered)
    assert [f.kind for f in view.findings()] == ["forged"]
    assert view.report(REPORT) is None


def test_bytes_that_are_not_an_envelope_are_a_finding() -> None:
    view = Org().view()
    assert not view.ingest(b"\x00not an envelope")
    assert [f.kind for f in view.findings()] == ["malformed"]


def test_an_envelope_of_another_organisation_is_a_finding() -> None:
    org, other = Org(), Org()
    view = org.view()
    state = DeviceState(org_id=b"X" * 16, device_id=other.field.verify_key.key_id)
    seal_edit(
        state, roster=other.roster, signing_key=other.field, report=REPORT, content=content(a="x")
    )
    assert not view.ingest(state.outbox[0].data)
    assert [f.kind for f in view.findings()] == ["foreign"]


def test_a_revision_whose_sender_key_is_not_seen_waits_and_says_so() -> None:
    # PROTOCOL §15.5 item 2: revisions whose sender key it has not seen are flagged.
    org = Org()
    key, *revisions = sealed(org, 2)
    view = org.view()
    for data in revisions:
        view.ingest(data)
    assert view.report(REPORT) is None
    assert [(f.kind, f.seq) for f in view.findings()] == [
        ("gap", 1),
        ("waiting-key", 2),
        ("waiting-key", 3),
    ]
    verification = view.verification(REPORT)
    assert verification.state == "with-findings"
    assert verification.reasons == ("sender key at seq 1 not seen",)
    view.ingest(key)
    assert field_of(view, REPORT, "a").value == "1" and view.findings() == []
    assert view.verification(REPORT).verified


def test_an_epoch_sealed_to_a_key_the_roster_did_not_list_is_a_finding() -> None:
    # PROTOCOL §4.3 item 6: a device never encrypts to a key the roster did not sign.
    org = Org()
    extra = KemPrivateKey.generate()
    rogue = seal_sender_key(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=org.roster.roster.version,
        chain_key=ChainKey.generate(),
        recipients=[org.coord_kem.public_key, extra.public_key],
        signing_key=org.field,
    )
    view = CoordinatorView(roster=org.roster, kem_key=org.coord_kem, history=org.chain)
    view.ingest(rogue.to_bytes())
    assert [f.kind for f in view.findings()] == ["wrong-recipients"]
    honest = org.view()
    for data in sealed(org, 1):
        honest.ingest(data)
    assert honest.findings() == []


@settings(max_examples=20)
@given(st.randoms(use_true_random=False))
def test_two_coordinators_with_the_same_envelopes_show_the_same_state(rnd: random.Random) -> None:
    # PROTOCOL §14.7 item 1, §15.5 item 3.
    org = Org()
    second, kem2 = SigningKey.generate(), KemPrivateKey.generate()
    member = Member(second.verify_key.key_id, second.verify_key, Role.COORDINATOR, kem2.public_key)
    org.extend(lambda r: r.with_member(member))
    field_state, coord_state = (
        org.device(),
        DeviceState(org_id=ORG, device_id=org.coord.verify_key.key_id),
    )
    seal_edit(
        field_state,
        roster=org.roster,
        signing_key=org.field,
        report=REPORT,
        content=content(a="x", b="1"),
    )
    root = field_state.heads[REPORT]
    seal_edit(
        field_state,
        roster=org.roster,
        signing_key=org.field,
        report=REPORT,
        content=content(a="field"),
    )
    seal_edit(
        coord_state,
        roster=org.roster,
        signing_key=org.coord,
        report=REPORT,
        content=content(a="coord"),
        parents=root,
    )
    envelopes = [i.data for i in field_state.outbox + coord_state.outbox]
    one = org.view()
    two = CoordinatorView(roster=org.roster, kem_key=kem2)
    for data in envelopes:
        one.ingest(data)
    shuffled = envelopes + envelopes[:2]
    rnd.shuffle(shuffled)
    for data in shuffled:
        two.ingest(data)
    assert one.reports() == two.reports()
    assert one.findings() == two.findings() == []
    assert set(field_of(one, REPORT, "a").values) == {"field", "coord"}
    assert field_of(one, REPORT, "b").value == "1"
    assert one.verification(REPORT) == two.verification(REPORT)


# --- key commitment (PROTOCOL §4.3, THREAT_MODEL §7.11) ----------------------------------------


def _two_coordinators() -> tuple[Org, KemPrivateKey, CoordinatorView, CoordinatorView]:
    org = Org()
    second, second_kem = SigningKey.generate(), KemPrivateKey.generate()
    org.extend(
        lambda r: r.with_member(
            Member(
                second.verify_key.key_id,
                second.verify_key,
                Role.COORDINATOR,
                second_kem.public_key,
            )
        )
    )
    views = tuple(
        CoordinatorView(roster=org.roster, kem_key=kem, history=org.chain)
        for kem in (org.coord_kem, second_kem)
    )
    return org, second_kem, views[0], views[1]


def _revision(org: Org, key_envelope: Envelope, chain_key: ChainKey, seq: int, prev: bytes):
    return seal_revision(
        org=ORG,
        report=REPORT,
        parents=(),
        seq=seq,
        prev=prev,
        roster_version=org.roster.roster.version,
        key_seq=key_envelope.header.seq,
        message_key=message_key_at(chain_key, seq - key_envelope.header.seq),
        content=content(a="what the author says").encode(),
        signing_key=org.field,
    )


@settings(max_examples=10)
@given(st.booleans())
def test_a_sender_key_whose_wraps_disagree_is_a_finding_and_nothing_under_it_is_shown(
    key_first: bool,
) -> None:
    # PROTOCOL §4.3, §4.5, §15.5 item 2: the coordinator whose wrap matches the signed
    # commitment reads the report; the other sees key-commitment-mismatch on the key envelope
    # and on the revision, and no content; neither sees anything else.
    org, second_kem, first, second = _two_coordinators()
    ck0, other = ChainKey.generate(), ChainKey.generate()
    key_envelope = _seal_sender_key_from_parts(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=org.roster.roster.version,
        committed=ck0,
        wrapped=[(org.coord_kem.public_key, ck0), (second_kem.public_key, other)],
        signing_key=org.field,
    )
    revision = _revision(org, key_envelope, ck0, 2, key_envelope.id)
    envelopes = [key_envelope.to_bytes(), revision.to_bytes()]
    for view in (first, second):
        for data in envelopes if key_first else envelopes[::-1]:
            view.ingest(data)
    assert field_of(first, REPORT, "a").value == "what the author says"
    assert first.findings() == [] and first.verification(REPORT).verified
    assert [(f.kind, f.seq) for f in second.findings()] == [
        ("key-commitment-mismatch", 1),
        ("key-commitment-mismatch", 2),
    ]
    assert "different keys" in second.findings()[0].text()
    assert second.report(REPORT) is None and second.reports() == {}
    assert second.verification(REPORT).reasons == ("key-commitment-mismatch",)


@settings(max_examples=10)
@given(st.permutations(range(4)))
def test_a_revision_under_a_forked_sender_key_opens_with_the_key_its_links_name(
    order: list[int],
) -> None:
    # PROTOCOL §4.3 "Key commitment": two committed key envelopes at one seq (an equivocation a
    # colluding server may show) never give one revision two readings: the revision opens with
    # the key envelope its signed `h` links lead to, whatever the order; one whose links are
    # missing opens with neither.
    org = Org()

    def key_envelope(chain_key: ChainKey) -> Envelope:
        return seal_sender_key(
            org=ORG,
            seq=1,
            prev=bytes(32),
            roster_version=org.roster.roster.version,
            chain_key=chain_key,
            recipients=org.roster.roster.recipients(),
            signing_key=org.field,
        )

    ck0, other = ChainKey.generate(), ChainKey.generate()
    named, decoy = key_envelope(ck0), key_envelope(other)
    linked = _revision(org, named, ck0, 2, named.id)
    withheld = _revision(org, named, ck0, 3, linked.id)
    unlinked = _revision(org, named, ck0, 4, withheld.id)
    envelopes = [named, decoy, linked, unlinked]
    view = org.view()
    for i in order:
        view.ingest(envelopes[i].to_bytes())
    state = view.report(REPORT)
    assert state is not None and state.revision_count == 1
    assert {(f.kind, f.seq) for f in view.findings()} == {("fork", 1), ("gap", 3), ("fork", 4)}
