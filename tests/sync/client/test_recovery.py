"""The recovery key in the client core: devices seal to it, a restored coordinator reads with
it, and a restore trusts only the chain its locator pins (PROTOCOL §4.3 rule 6, §20.3, §20.4).
The server here is played by hand, as an adversary where it matters."""

from __future__ import annotations

import json

import pytest

from crypto import (
    Envelope,
    KemPrivateKey,
    Purpose,
    SigningKey,
    encoding,
    parse_envelope,
    seal_revision,
    seal_sender_key,
    sign_document,
    wrap_chain_key,
)
from crypto.chain import ChainKey
from crypto.recovery import RecoveryKey
from sync.client import CoordinatorView, DeviceState, Request, Response, drive, seal_edit
from sync.client.flow import ServerMisbehaved
from sync.client.recovery import restore_flow, setup_flow, setup_version
from sync.grant import GrantEntry, _info, make_grant
from sync.messages import b64decode, b64encode
from sync.recovery import RecoveryLocator, RecoveryMismatch, public_key, setup_roster
from sync.report import ReportContent
from sync.roster import Member, Role, Roster, SignedRoster

ORG = b"R" * 16
REPORT = bytes(16)


def _coordinator() -> tuple[SigningKey, KemPrivateKey, Member]:
    key, kem = SigningKey.generate(), KemPrivateKey.generate()
    return key, kem, Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)


class _Org:
    def __init__(self) -> None:
        self.server = SigningKey.generate()
        self.founder, self.founder_kem, founder = _coordinator()
        self.field = SigningKey.generate()
        field = Member(self.field.verify_key.key_id, self.field.verify_key, Role.FIELD)
        self.recovery = RecoveryKey.derive(bytes([3]) * 32, ORG)
        v1 = Roster(ORG, 1, bytes(32), self.server.verify_key, (founder, field))
        self.v1 = v1.sign(self.founder)
        self.v2 = setup_roster(self.v1, public_key(self.recovery)).sign(self.founder)
        self.chain = [self.v1, self.v2]


def _server(org: _Org, served: list[SignedRoster], posted: list[SignedRoster]):
    """A scripted server: serves ``served``, lists devices, keeps what is posted."""

    def send(request: Request) -> Response:
        if request.method == "GET" and request.path.endswith("/roster"):
            versions = [b64encode(v.to_bytes()) for v in served]
            return Response.of_json(200, {"versions": versions})
        if request.method == "GET" and request.path.endswith("/devices"):
            device = {
                "device_id": b64encode(org.founder.verify_key.key_id),
                "role": "coordinator",
                "state": "admitted",
                "signing_key": b64encode(org.founder.verify_key.raw),
                "flags": [],
                "watermark": 7,
                "max_seq": 7,
                "holes": [],
            }
            return Response.of_json(200, {"devices": [device]})
        assert request.method == "POST" and request.path.endswith("/roster")
        body = request.body if isinstance(request.body, dict) else json.loads(request.body)
        posted.append(SignedRoster.parse(b64decode(body["roster"])))
        return Response.of_json(200, {"version": posted[-1].roster.version})

    return send


def test_every_epoch_after_setup_is_sealed_to_the_recovery_key_and_opens_with_it() -> None:
    """PROTOCOL §4.3 rule 6, §20.4: a field device's epoch under v2 names the recovery key;
    a coordinator holding only the recovery key (a restored one, not a recipient) reads it."""
    org = _Org()
    state = DeviceState(org_id=ORG, device_id=org.field.verify_key.key_id)
    content = ReportContent(client_time=1_700_000_000, fields={"place": "Market"})
    seal_edit(state, roster=org.v2, signing_key=org.field, report=REPORT, content=content)
    key_envelope = parse_envelope(state.outbox[0].data)
    assert org.recovery.kem_key.public_key.key_id in key_envelope.header.recipients
    _, newcomer_kem, _ = _coordinator()
    restored = CoordinatorView(
        roster=org.v2, kem_key=newcomer_kem, history=org.chain, also_keys=[org.recovery.kem_key]
    )
    for item in state.outbox:
        restored.ingest(item.data)
    assert restored.findings() == []
    place = restored.reports()[REPORT].field("place")
    assert place is not None and place.values == ("Market",)
    without = CoordinatorView(roster=org.v2, kem_key=newcomer_kem, history=org.chain)
    for item in state.outbox:
        without.ingest(item.data)
    assert {f.kind for f in without.findings()} == {"waiting-key"}  # grantable (§19.5)


def test_an_epoch_that_leaves_the_recovery_key_out_is_a_wrong_recipients_finding() -> None:
    """PROTOCOL §20.3: a device (or a server stripping a wrap) cannot drop the recovery key
    quietly: its recipients differ from the roster version it names."""
    org = _Org()
    envelope = seal_sender_key(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=2,
        chain_key=ChainKey.generate(),
        recipients=[org.founder_kem.public_key],
        signing_key=org.field,
    )
    view = CoordinatorView(roster=org.v2, kem_key=org.founder_kem, history=org.chain)
    view.ingest(envelope.to_bytes())
    assert "wrong-recipients" in {f.kind for f in view.findings()}


def test_restore_admits_the_newcomer_and_revokes_at_the_servers_watermark() -> None:
    org = _Org()
    _, _, newcomer = _coordinator()
    locator = RecoveryLocator("https://x.example", ORG, org.v2.hash)
    posted: list[SignedRoster] = []
    flow = restore_flow(
        locator=locator,
        recovery=org.recovery,
        newcomer=newcomer,
        revoke=[org.founder.verify_key.key_id.hex()[:8]],
    )
    restored = drive(flow, _server(org, org.chain, posted))
    assert posted == [restored.roster] and restored.roster.roster.version == 3
    assert restored.roster.signer == org.recovery.signing_key.verify_key.key_id
    founder = restored.roster.roster.member(org.founder.verify_key.key_id)
    assert founder is not None and founder.revoked_after == 7
    assert restored.revoked == ((org.founder.verify_key.key_id, 7),)


def test_restore_refuses_a_chain_without_the_locators_version() -> None:
    """PROTOCOL §20.4 step 2: a server that builds another chain around the public recovery
    key (its own genesis, its own coordinator) is refused before anything is signed."""
    org = _Org()
    rogue, _, rogue_member = _coordinator()
    fake_v1 = Roster(ORG, 1, bytes(32), org.server.verify_key, (rogue_member,)).sign(rogue)
    fake_v2 = setup_roster(fake_v1, public_key(org.recovery)).sign(rogue)
    locator = RecoveryLocator("https://x.example", ORG, org.v2.hash)
    posted: list[SignedRoster] = []
    _, _, newcomer = _coordinator()
    flow = restore_flow(locator=locator, recovery=org.recovery, newcomer=newcomer, revoke=[])
    with pytest.raises(ServerMisbehaved, match="pinned fingerprint"):
        drive(flow, _server(org, [fake_v1, fake_v2], posted))
    assert posted == []


def test_restore_refuses_shares_of_another_key_and_setup_runs_once() -> None:
    org = _Org()
    _, _, newcomer = _coordinator()
    locator = RecoveryLocator("https://x.example", ORG, org.v2.hash)
    stranger = RecoveryKey.derive(bytes([4]) * 32, ORG)
    posted: list[SignedRoster] = []
    flow = restore_flow(locator=locator, recovery=stranger, newcomer=newcomer, revoke=[])
    with pytest.raises(RecoveryMismatch):
        drive(flow, _server(org, org.chain, posted))
    with pytest.raises(RecoveryMismatch, match="already has a recovery key"):
        setup_version(org.v2, signing_key=org.founder, recovery=public_key(stranger))
    assert posted == []
    first = setup_version(org.v1, signing_key=org.founder, recovery=public_key(org.recovery))
    assert first.hash == org.v2.hash  # deterministic: the sheets can name it before the post
    assert drive(setup_flow(org_path="/v1/orgs/x", candidate=first), _server(org, [], posted))
    assert posted == [first]


def _pre_setup_epoch(org: _Org) -> tuple[list[bytes], Envelope, ChainKey]:
    """A field device's epoch under v1 (before setup): sealed to the founder only."""
    chain_key = ChainKey.generate()
    envelope = seal_sender_key(
        org=ORG,
        seq=1,
        prev=bytes(32),
        roster_version=1,
        chain_key=chain_key,
        recipients=[org.founder_kem.public_key],
        signing_key=org.field,
    )
    message_key, _ = chain_key.advance()
    revision = seal_revision(
        org=ORG,
        report=REPORT,
        parents=(),
        seq=2,
        prev=envelope.id,
        roster_version=1,
        key_seq=1,
        message_key=message_key,
        content=ReportContent(client_time=1, fields={"place": "Market"}).encode(),
        signing_key=org.field,
    )
    return [envelope.to_bytes(), revision.to_bytes()], envelope, chain_key


def _restored_view(org: _Org, grant: bytes, envelopes: list[bytes]) -> CoordinatorView:
    _, newcomer_kem, _ = _coordinator()
    view = CoordinatorView(
        roster=org.v2,
        kem_key=newcomer_kem,
        history=org.chain,
        also_keys=[org.recovery.kem_key],
        grants=[grant],
    )
    for data in envelopes:
        view.ingest(data)
    return view


def test_an_epoch_sealed_before_setup_opens_through_a_grant_to_the_recovery_key() -> None:
    """PROTOCOL §20.3, §19.3: the founder grants the recovery key an epoch sealed before
    setup; a restored coordinator (the recovery key among its keys) opens it, with no
    `waiting-key` and no lost epoch. A grant whose wrap carries another chain key, signed
    by the granter, is refused by the key envelope's commitment, loudly."""
    org = _Org()
    envelopes, envelope, chain_key = _pre_setup_epoch(org)
    recovery = org.recovery.kem_key.public_key
    assert recovery.key_id not in envelope.header.recipients
    grant = make_grant(
        org_id=ORG,
        roster_version=2,
        issued_at=1,
        epochs=[(envelope, chain_key)],
        recipient=recovery,
        signing_key=org.founder,
    )
    assert grant.grantee == recovery.key_id
    view = _restored_view(org, grant.document, envelopes)
    assert view.findings() == [] and view.lost_epochs() == []
    place = view.reports()[REPORT].field("place")
    assert place is not None and place.values == ("Market",)

    body = encoding.decode(encoding.decode(grant.document)[2])
    swapped = dict(body, w=[list(x) for x in body["w"]])
    entry = GrantEntry(*body["w"][0][:4], b"")
    info = _info(ORG, org.founder.verify_key.key_id, recovery.key_id, 2, entry)
    swapped["w"][0][4] = wrap_chain_key(ChainKey.generate(), recovery, info=info)
    forged = sign_document(Purpose.GRANT_SIGNATURE, swapped, org.founder).to_bytes()
    view = _restored_view(org, forged, envelopes)
    kinds = {f.kind for f in view.findings()}
    assert "grant-refused" in kinds and "waiting-key" in kinds  # the founder can still grant
    assert REPORT not in view.reports() or view.reports()[REPORT].field("place") is None
