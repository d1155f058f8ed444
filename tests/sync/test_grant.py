"""Grants (PROTOCOL §19): the committed vectors, and a grant that lies in every way a
server or a malicious coordinator can make it lie."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from crypto import (
    ChainKey,
    KemPrivateKey,
    KeyCommitmentMismatch,
    Purpose,
    SigningKey,
    VerificationFailed,
    accept_chain_key,
    digest,
    encoding,
    parse_envelope,
    seal_sender_key,
    sign_document,
)
from sync.client.grants import GrantLedger
from sync.grant import (
    MAX_GRANT_ENTRIES,
    GrantError,
    grant_id,
    make_grant,
    make_grants,
    open_grant,
    peek_grant,
)
from sync.roster import Member, Role, Roster
from sync.rotation import RotationError, RotationRequest, conflicting

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "grant_v1.json").read_text(encoding="utf-8")
)["vectors"]
ORG = bytes(range(16))


def _open(vector: dict[str, Any]) -> tuple[Any, dict[bytes, bytes]]:
    inputs = vector["inputs"]
    return open_grant(
        bytes.fromhex(vector["document"]),
        org_id=bytes.fromhex(inputs["org"]),
        granter=SigningKey(bytes.fromhex(inputs["granter_seed"])).verify_key,
        recipient=KemPrivateKey(bytes.fromhex(inputs["grantee_kem_seed"])),
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"][:40] for v in VECTORS])
def test_grant_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §19.2, §19.3: the recorded grants open, or fail, as their vector says, and
    each opened key is accepted only if its key envelope's commitment names it."""
    inputs = vector["inputs"]
    if not vector["opens"]:
        with pytest.raises(GrantError, match="does not open"):
            _open(vector)
        return
    grant, keys = _open(vector)
    envelopes = [parse_envelope(bytes.fromhex(e)) for e in inputs["key_envelopes"]]
    assert grant.roster_version == inputs["roster_version"]
    assert grant.issued_at == inputs["issued_at"]
    assert sorted(keys) == sorted(e.id for e in envelopes)
    for envelope, expected, raw in zip(
        envelopes, vector["accepted"], inputs["chain_keys"], strict=True
    ):
        if expected:
            assert accept_chain_key(envelope, keys[envelope.id]).raw == bytes.fromhex(raw)
        else:
            with pytest.raises(KeyCommitmentMismatch):
                accept_chain_key(envelope, keys[envelope.id])
    if "grant_id" in vector:
        document = bytes.fromhex(vector["document"])
        assert grant_id(document).hex() == vector["grant_id"] == grant.id.hex()
        body = encoding.decode(document)[2]
        assert digest(Purpose.GRANT_SIGNATURE, body).hex() == vector["digest"]


def test_a_grant_for_another_grantee_or_organisation_or_signer_is_refused() -> None:
    """PROTOCOL §19.3: the grantee, the organisation and the signer are all checked."""
    honest = VECTORS[0]
    inputs = honest["inputs"]
    document = bytes.fromhex(honest["document"])
    granter = SigningKey(bytes.fromhex(inputs["granter_seed"])).verify_key
    other = KemPrivateKey(bytes.fromhex(inputs["other_kem_seed"]))
    org = bytes.fromhex(inputs["org"])
    with pytest.raises(GrantError, match="another grantee"):
        open_grant(document, org_id=org, granter=granter, recipient=other)
    mine = KemPrivateKey(bytes.fromhex(inputs["grantee_kem_seed"]))
    with pytest.raises(GrantError, match="another organisation"):
        open_grant(document, org_id=ORG, granter=granter, recipient=mine)
    with pytest.raises(GrantError, match="not signed by the key it names"):
        open_grant(document, org_id=org, granter=SigningKey.generate().verify_key, recipient=mine)


def test_a_grant_altered_anywhere_does_not_verify() -> None:
    """PROTOCOL §19.2: the server holds grants as opaque items; any change breaks the
    signature, and a wrap moved under a new signature does not open (the info binds it)."""
    honest = VECTORS[0]
    document = bytearray(bytes.fromhex(honest["document"]))
    document[len(document) // 2] ^= 1
    with pytest.raises(GrantError):
        _open({**honest, "document": bytes(document).hex()})


class _World:
    """One organisation: a founder coordinator, a field device, a newcomer coordinator."""

    def __init__(self) -> None:
        self.founder, self.founder_kem = SigningKey.generate(), KemPrivateKey.generate()
        self.newcomer, self.newcomer_kem = SigningKey.generate(), KemPrivateKey.generate()
        self.field = SigningKey.generate()
        members = (
            Member(
                self.founder.verify_key.key_id,
                self.founder.verify_key,
                Role.COORDINATOR,
                self.founder_kem.public_key,
            ),
            Member(
                self.newcomer.verify_key.key_id,
                self.newcomer.verify_key,
                Role.COORDINATOR,
                self.newcomer_kem.public_key,
            ),
            Member(self.field.verify_key.key_id, self.field.verify_key, Role.FIELD),
        )
        server = SigningKey.generate().verify_key
        ordered = tuple(sorted(members, key=lambda m: m.device_id))
        self.roster = Roster(ORG, 1, bytes(32), server, ordered)
        self.chain_key = ChainKey(bytes(range(32)))
        self.envelope = seal_sender_key(
            org=ORG,
            seq=1,
            prev=bytes(32),
            roster_version=1,
            chain_key=self.chain_key,
            recipients=[self.founder_kem.public_key],
            signing_key=self.field,
        )

    def grant(self, signer: SigningKey | None = None, **kw: Any) -> bytes:
        return make_grant(
            org_id=kw.get("org", ORG),
            roster_version=1,
            issued_at=7,
            epochs=[(self.envelope, self.chain_key)],
            recipient=self.newcomer_kem.public_key,
            signing_key=signer or self.founder,
        ).document

    def ledger(self) -> GrantLedger:
        return GrantLedger(ORG, (self.newcomer_kem,), {1: self.roster})


def test_the_ledger_refuses_a_grant_by_a_field_device_loudly() -> None:
    """PROTOCOL §19.3: only an active coordinator of the version a grant names may grant."""
    world = _World()
    ledger = world.ledger()
    assert not ledger.add(world.grant(signer=world.field))
    assert ledger.key(world.envelope) is None
    assert [f.kind for f in ledger.findings()] == ["grant-refused"]
    assert "not signed by an active coordinator" in ledger.findings()[0].detail


def test_a_replayed_grant_changes_nothing_and_the_key_passes_the_commitment() -> None:
    """PROTOCOL §19.3: a grant is named by its bytes; a second grant of one epoch is a spare."""
    world = _World()
    ledger = world.ledger()
    document = world.grant()
    assert ledger.add(document)
    assert not ledger.add(document)
    assert not ledger.add(world.grant())  # another grant of the same epoch: no new key
    assert len(ledger.accepted) == 2 and len(ledger.keys[world.envelope.id]) == 2
    key = ledger.key(world.envelope)
    assert key is not None and key.raw == world.chain_key.raw
    assert ledger.holders(world.envelope.id) == {world.newcomer_kem.public_key.key_id}
    assert ledger.findings() == []


def test_a_grant_of_another_organisation_is_refused() -> None:
    world = _World()
    ledger = world.ledger()
    body = encoding.decode(encoding.decode(world.grant())[2])
    forged = sign_document(Purpose.GRANT_SIGNATURE, dict(body, o=bytes(16)), world.founder)
    assert not ledger.add(forged.to_bytes())
    assert "another organisation" in ledger.findings()[0].detail


def test_a_granter_cannot_grant_a_key_the_header_disowns() -> None:
    """PROTOCOL §19.2: make_grant checks each key against its key envelope first."""
    world = _World()
    with pytest.raises(KeyCommitmentMismatch):
        make_grant(
            org_id=ORG,
            roster_version=1,
            issued_at=0,
            epochs=[(world.envelope, ChainKey(bytes(32)))],
            recipient=world.newcomer_kem.public_key,
            signing_key=world.founder,
        )
    with pytest.raises(ValueError, match="1 to"):
        make_grant(
            org_id=ORG,
            roster_version=1,
            issued_at=0,
            epochs=[],
            recipient=world.newcomer_kem.public_key,
            signing_key=world.founder,
        )


def test_many_epochs_split_into_grants_of_bounded_size() -> None:
    """PROTOCOL §19.2: at most MAX_GRANT_ENTRIES epochs per grant; measured bytes per epoch."""
    world = _World()
    epochs = [(world.envelope, world.chain_key)] * 3
    grants = make_grants(
        org_id=ORG,
        roster_version=1,
        issued_at=0,
        epochs=epochs[:1],
        recipient=world.newcomer_kem.public_key,
        signing_key=world.founder,
    )
    one = len(grants[0].document)
    # 1,168 bytes of wrap and 94 of binding per epoch, plus the signed document around them.
    assert len(grants) == 1 and one < 1500
    assert MAX_GRANT_ENTRIES * 1300 < 512 * 1024
    with pytest.raises(GrantError):
        peek_grant(b"\x00" * 10)
    with pytest.raises(VerificationFailed):
        peek_grant(bytes(600 * 1024))


ROTATIONS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rotation_v1.json").read_text(encoding="utf-8")
)["vectors"]


@pytest.mark.parametrize("vector", ROTATIONS, ids=[v["name"][:40] for v in ROTATIONS])
def test_rotation_vectors(vector: dict[str, Any]) -> None:
    """PROTOCOL §19.7: a rotation request is signed by the old key and proven by the new."""
    inputs = vector["inputs"]
    old = SigningKey(bytes.fromhex(inputs["old_seed"]))
    org = bytes.fromhex(inputs["org"])
    document = bytes.fromhex(vector["document"])
    if not vector["verifies"]:
        with pytest.raises(RotationError, match="proof"):
            RotationRequest.verify(document, old.verify_key, org_id=org)
        return
    new = SigningKey(bytes.fromhex(inputs["new_seed"]))
    again = RotationRequest.make(org_id=org, old_key=old, new_key=new)
    assert again.document == document  # Ed25519 and canonical CBOR: re-derived exactly
    request = RotationRequest.verify(document, old.verify_key, org_id=org)
    assert request.new_device.hex() == vector["new_device"] == new.verify_key.key_id.hex()
    claim = bytes.fromhex(vector["claim"])
    proof = encoding.decode(encoding.decode(document)[2])["p"]
    new.verify_key.verify(Purpose.ROTATION_SIGNATURE, claim, proof)
    with pytest.raises(RotationError, match="another organisation"):
        RotationRequest.verify(document, old.verify_key, org_id=ORG)
    with pytest.raises(RotationError, match="not signed by the device"):
        RotationRequest.verify(document, new.verify_key, org_id=org)


def test_two_requests_for_one_device_naming_different_keys_are_applied_by_nobody() -> None:
    """PROTOCOL §19.7: the owner and a thief of the old key both ask: conflicting."""
    old, mine, theirs = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    one = RotationRequest.make(org_id=ORG, old_key=old, new_key=mine)
    two = RotationRequest.make(org_id=ORG, old_key=old, new_key=theirs)
    assert conflicting([one]) == set()
    assert conflicting([one, one]) == set()
    assert conflicting([one, two]) == {old.verify_key.key_id}


def _view_of_newcomer(
    world: _World, roster: Roster, grants: tuple[bytes, ...] = (), recovery: Any = None
):
    from crypto import seal_revision
    from sync.client.view import CoordinatorView
    from sync.report import ReportContent

    message_key, _ = world.chain_key.advance()
    revision = seal_revision(
        org=ORG,
        report=bytes(16),
        parents=(),
        seq=2,
        prev=world.envelope.id,
        roster_version=1,
        key_seq=1,
        message_key=message_key,
        content=ReportContent(client_time=1, fields={"place": "Market"}).encode(),
        signing_key=world.field,
    )
    # Version 1: the founder alone (the epoch is sealed to it); version 2 admits the newcomer.
    newcomer = world.newcomer.verify_key.key_id
    first = Roster(
        ORG,
        1,
        bytes(32),
        roster.server_key,
        tuple(m for m in world.roster.members if m.device_id != newcomer),
        recovery=recovery,
    ).sign(world.founder)
    second = replace(roster, version=2, prev=first.hash, recovery=recovery).sign(world.founder)
    view = CoordinatorView(
        roster=second, kem_key=world.newcomer_kem, grants=grants, history=[first]
    )
    for data in (world.envelope.to_bytes(), revision.to_bytes()):
        view.ingest(data)
    return view


def test_waiting_key_only_for_a_key_that_can_still_arrive() -> None:
    """PROTOCOL §19.5: while the founder, who holds the epoch, is active: `waiting-key`; a
    grant then opens it like the newcomer's own wrap; once the founder is revoked and no
    one else holds it, no warning is repeated: `lost_epochs` states it."""
    world = _World()
    view = _view_of_newcomer(world, world.roster)
    assert [f.kind for f in view.findings()] == ["waiting-key"]
    assert "grant" in view.findings()[0].detail and view.lost_epochs() == []
    assert view.add_grants([world.grant()])
    assert view.findings() == [] and view.verification(bytes(16)).verified
    founder = world.founder.verify_key.key_id
    gone = world.roster.revoke(founder, after_seq=0)
    view = _view_of_newcomer(world, gone)
    assert view.findings() == []
    assert [(e.device, e.seq, e.revisions) for e in view.lost_epochs()] == [
        (world.field.verify_key.key_id, 1, 1)
    ]
    assert "no one can grant" in view.lost_epochs()[0].text()


def test_an_epoch_only_the_recovery_key_holds_waits_for_a_restore() -> None:
    """PROTOCOL §19.5, §20: the recovery key is a recipient but no coordinator: once the
    founder is revoked, an epoch sealed to the founder and the recovery key is neither
    "waiting for a grant from a coordinator who holds it" nor lost: a restore reads it."""
    from crypto.recovery import RecoveryKey
    from sync.roster import RecoveryPublicKey

    world = _World()
    keys = RecoveryKey.derive(bytes(range(32)), ORG)
    recovery = RecoveryPublicKey(keys.signing_key.verify_key, keys.kem_key.public_key)
    world.envelope = seal_sender_key(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=1,
        chain_key=world.chain_key,
        recipients=[world.founder_kem.public_key, recovery.kem_key],
        signing_key=world.field,
    )
    founder = world.founder.verify_key.key_id
    view = _view_of_newcomer(world, world.roster.revoke(founder, after_seq=0), recovery=recovery)
    assert view.lost_epochs() == []
    [finding] = view.findings()
    assert finding.kind == "waiting-key" and "recovery restore" in finding.detail
    assert "coordinator who holds it" not in finding.detail
