"""A device's own chain: sealing, epochs, what the device keeps (PROTOCOL §15.1, §15.3 item 3)."""

from __future__ import annotations

import secrets

import pytest

from crypto import (
    ChainKey,
    KemPrivateKey,
    SigningKey,
    VerificationFailed,
    encoding,
    open_revision,
    parse_envelope,
)
from sync.client import EPOCH_LENGTH, CoordinatorView, DeviceState, seal_edit
from sync.roster import Member, Role
from tests.sync.client.support import REPORT, Org, content, field_of


def test_first_envelope_announces_a_sender_key_then_revisions_follow_the_chain() -> None:
    # PROTOCOL §15.1 item 3: the parents of an edit are the heads the device knows.
    org = Org()
    state = org.device()
    report = secrets.token_bytes(16)
    first = seal_edit(
        state, roster=org.roster, signing_key=org.field, report=report, content=content(a="1")
    )
    second = seal_edit(
        state, roster=org.roster, signing_key=org.field, report=report, content=content(a="2")
    )
    kinds = [(i.seq, i.report) for i in state.outbox]
    assert kinds == [(1, None), (2, report), (3, report)]
    assert parse_envelope(state.outbox[0].data).header.kind == "key"
    assert second.header.parents == (first.id,)
    assert second.header.prev == first.id
    assert first.header.prev == state.outbox[0].envelope_id
    assert state.heads[report] == (second.id,)
    assert state.seq == 3 and state.prev == second.id


def test_device_state_holds_no_plaintext_and_round_trips() -> None:
    # PROTOCOL §15.1 item 2: nothing is kept in plaintext.
    org = Org()
    state = org.device()
    seal_edit(
        state,
        roster=org.roster,
        signing_key=org.field,
        report=REPORT,
        content=content(w="CANARY-PLAIN"),
    )
    blob = encoding.encode(state.to_cbor())
    assert b"CANARY-PLAIN" not in blob
    assert DeviceState.from_cbor(encoding.decode(blob)).to_cbor() == state.to_cbor()


def test_a_restored_chain_position_never_reuses_a_sequence_number() -> None:
    # PROTOCOL §15.1 item 1: the persisted position continues the chain after a restart.
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="x")
    )
    restored = DeviceState.from_cbor(encoding.decode(encoding.encode(state.to_cbor())))
    after = seal_edit(
        restored, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="x")
    )
    assert after.header.seq == 3 and after.header.prev == state.prev
    assert [i.seq for i in restored.outbox] == [1, 2, 3]


def test_a_change_of_coordinators_starts_a_new_epoch_sealed_to_the_new_set() -> None:
    # PROTOCOL §15.1 item 4, §15.7 item 2: a new coordinator reads only later epochs.
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="1")
    )
    second = SigningKey.generate()
    kem2 = KemPrivateKey.generate()
    org.extend(
        lambda r: r.with_member(
            Member(second.verify_key.key_id, second.verify_key, Role.COORDINATOR, kem2.public_key)
        )
    )
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="2")
    )
    assert [i.report is None for i in state.outbox] == [True, False, True, False]
    view = CoordinatorView(roster=org.roster, kem_key=kem2)
    for item in state.outbox:
        view.ingest(item.data)
    # The new coordinator reads only what was sealed after it joined, until a grant
    # (PROTOCOL §19) brings the earlier epoch: the founder, still active, holds it.
    assert field_of(view, REPORT, "a").value == "2"
    assert any(f.kind == "waiting-key" and "grant" in f.detail for f in view.findings())


def test_an_epoch_ends_after_epoch_length_revisions() -> None:
    # PROTOCOL §15.1 item 4: a new epoch at least every 10,000 revisions.
    assert EPOCH_LENGTH == 10_000
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="x")
    )
    state.chain_index = EPOCH_LENGTH - 1  # as if 9,999 revisions were sealed in this epoch
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="x")
    )
    assert [i.report is None for i in state.outbox] == [True, False, False]
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="x")
    )
    assert [i.report is None for i in state.outbox] == [True, False, False, True, False]
    assert state.key_seq == 4 and state.chain_index == 1


def test_sealing_with_another_devices_key_is_refused() -> None:
    org = Org()
    state = org.device()
    with pytest.raises(ValueError, match="does not belong"):
        seal_edit(
            state, roster=org.roster, signing_key=org.coord, report=REPORT, content=content(a="x")
        )
    assert state.outbox == [] and state.seq == 0


def test_a_seized_device_cannot_open_what_it_sealed() -> None:
    # PROTOCOL §4.3 item 4, §15.3 item 3 (D2): only the next chain key stays on the device.
    org = Org()
    state = org.device()
    sealed = seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a="x")
    )
    envelope = parse_envelope(sealed.to_bytes())
    assert state.chain_key is not None
    held = ChainKey(state.chain_key)
    for candidate in (held.advance()[0], held.advance()[1].advance()[0]):
        with pytest.raises(VerificationFailed):
            open_revision(envelope, author=org.field.verify_key, message_key=candidate)
    view = org.view()
    for item in state.outbox:
        view.ingest(item.data)
    assert field_of(view, REPORT, "a").value == "x"
