"""The sans-I/O client engine (PROTOCOL §15.1-§15.7).

The tests play the server's side of each exchange by hand, often as an
adversary (bad receipts, reordered results, rolled-back rosters, forged or
withheld envelopes), and drive the engine's generator flows directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import KemPrivateKey, SigningKey
from sync.engine import (
    Checkpoint,
    CoordinatorView,
    DeviceState,
    Limits,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    admit_flow,
    b64d,
    b64e,
    pull_flow,
    push_flow,
    revoke_flow,
    roster_flow,
    seal_edit,
)
from sync.invite import Enrollment, Invite, seal_label
from sync.messages import decode_push_cbor
from sync.receipt import Receipt, ReceiptItem
from sync.report import ReportContent
from sync.roster import Member, Role, Roster, SignedRoster

ORG = b"O" * 16
PATH = "/v1/orgs/org"


class Org:
    def __init__(self) -> None:
        self.server = SigningKey.generate()
        self.coord = SigningKey.generate()
        self.coord_kem = KemPrivateKey.generate()
        self.field = SigningKey.generate()
        genesis = Roster(
            ORG,
            1,
            bytes(32),
            self.server.verify_key,
            (
                Member(
                    self.coord.verify_key.key_id,
                    self.coord.verify_key,
                    Role.COORDINATOR,
                    self.coord_kem.public_key,
                ),
            ),
        ).sign(self.coord)
        self.chain = [genesis]
        self.extend(
            lambda r: r.with_member(
                Member(self.field.verify_key.key_id, self.field.verify_key, Role.FIELD)
            )
        )

    @property
    def roster(self) -> SignedRoster:
        return self.chain[-1]

    def extend(self, change: Callable[[Roster], Roster]) -> SignedRoster:
        new = change(self.roster.roster).next_version(self.roster).sign(self.coord)
        self.chain.append(new)
        return new

    def device(self) -> DeviceState:
        return DeviceState(org_id=ORG, device_id=self.field.verify_key.key_id)

    def view(self) -> CoordinatorView:
        return CoordinatorView(roster=self.roster, kem_key=self.coord_kem)


def content(**fields: str) -> ReportContent:
    return ReportContent(client_time=1_700_000_000, fields=fields)


def drive(flow, handle: Callable[[Request], Response]):
    """Run a flow; ``handle`` plays the server. Returns (result, checkpoints)."""
    checkpoints: list[Checkpoint] = []
    message = next(flow)
    while True:
        if isinstance(message, Checkpoint):
            checkpoints.append(message)
            reply = None
        else:
            reply = handle(message)
        try:
            message = flow.send(reply)
        except StopIteration as stop:
            return stop.value, checkpoints


def pushed_envelopes(request: Request) -> list[bytes]:
    """The envelopes of a push request (the engine pushes CBOR, PROTOCOL §8.2)."""
    assert request.content_type == "application/cbor" and request.content is not None
    return decode_push_cbor(request.content)


class HonestServer:
    """Stores envelopes, answers push with per-item results and a signed receipt."""

    def __init__(self, org: Org, max_items: int = 1000) -> None:
        self.org = org
        self.stored: dict[bytes, int] = {}
        self.raw: dict[bytes, bytes] = {}
        self.requests: list[Request] = []
        self.max_items = max_items

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        assert request.path == f"{PATH}/push"
        envelopes = pushed_envelopes(request)
        if len(envelopes) > self.max_items:
            return Response(413, {"code": "payload_too_large", "detail": "too many"})
        from crypto import parse_envelope

        results, items = [], []
        for data in envelopes:
            env = parse_envelope(data)
            status = "duplicate" if env.id in self.stored else "created"
            self.stored.setdefault(env.id, len(self.stored) + 1)
            self.raw[env.id] = data
            results.append({"envelope_id": b64e(env.id), "status": status, "retryable": False})
            items.append(ReceiptItem(env.id, env.header.seq, self.stored[env.id]))
        device = parse_envelope(envelopes[0]).header.device
        receipt = Receipt(ORG, device, 1, tuple(items)).sign(self.org.server)
        return Response(200, {"results": results, "receipt": b64e(receipt.to_bytes())})


def test_first_envelope_announces_a_sender_key_then_revisions_follow_the_chain() -> None:
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
    assert second.header.parents == (first.id,)
    assert second.header.prev == first.id
    assert state.heads[report] == (second.id,)


def test_device_state_holds_no_plaintext_and_round_trips() -> None:
    org = Org()
    state = org.device()
    seal_edit(
        state,
        roster=org.roster,
        signing_key=org.field,
        report=bytes(16),
        content=content(w="CANARY-PLAIN"),
    )
    from crypto import encoding

    blob = encoding.encode(state.to_cbor())
    assert b"CANARY-PLAIN" not in blob
    assert DeviceState.from_cbor(encoding.decode(blob)).to_cbor() == state.to_cbor()


def test_a_change_of_coordinators_starts_a_new_epoch_sealed_to_the_new_set() -> None:
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=bytes(16), content=content(a="1")
    )
    second = SigningKey.generate()
    kem2 = KemPrivateKey.generate()
    org.extend(
        lambda r: r.with_member(
            Member(second.verify_key.key_id, second.verify_key, Role.COORDINATOR, kem2.public_key)
        )
    )
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=bytes(16), content=content(a="2")
    )
    assert [i.report is None for i in state.outbox] == [True, False, True, False]
    view = CoordinatorView(roster=org.roster, kem_key=kem2)
    for item in state.outbox:
        view.ingest(item.data)
    # The new coordinator reads only what was sealed after it joined.
    assert view.report(bytes(16)).field("a").value == "2"
    assert any(f.kind == "not-addressed" for f in view.findings())


def test_push_purges_only_what_a_valid_receipt_covers() -> None:
    org = Org()
    state = org.device()
    for i in range(5):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=bytes(16),
            content=content(a=str(i)),
        )
    server = HonestServer(org)
    summary, checkpoints = drive(
        push_flow(
            state, server_key=org.server.verify_key, limits=Limits(100, 10**6), org_path=PATH
        ),
        server,
    )
    assert state.outbox == [] and state.sent == 6 and summary.purged == 6
    assert len(server.stored) == 6
    assert [c.event for c in checkpoints] == ["BatchAcknowledged"]
    assert state.heads[bytes(16)]  # the device still knows its heads to keep editing


def test_push_splits_a_batch_the_server_finds_too_large() -> None:
    org = Org()
    state = org.device()
    for i in range(7):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=bytes(16),
            content=content(a=str(i)),
        )
    server = HonestServer(org, max_items=3)
    summary, _ = drive(
        push_flow(
            state, server_key=org.server.verify_key, limits=Limits(100, 10**6), org_path=PATH
        ),
        server,
    )
    assert state.outbox == [] and summary.splits >= 1
    assert len(server.stored) == 8


def test_a_forged_receipt_purges_nothing() -> None:
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=bytes(16), content=content(a="x")
    )
    impostor = SigningKey.generate()
    honest = HonestServer(org)

    def forging(request: Request) -> Response:
        response = honest(request)
        envs = pushed_envelopes(request)
        from crypto import parse_envelope

        items = tuple(
            ReceiptItem(parse_envelope(e).id, parse_envelope(e).header.seq, 1) for e in envs
        )
        fake = Receipt(ORG, org.field.verify_key.key_id, 1, items).sign(impostor)
        return Response(200, {**response.body, "receipt": b64e(fake.to_bytes())})

    with pytest.raises(ServerMisbehaved):
        drive(
            push_flow(state, server_key=org.server.verify_key, limits=Limits(), org_path=PATH),
            forging,
        )
    assert len(state.outbox) == 2


def test_results_decide_item_by_item_terminal_ones_are_kept_aside_not_lost() -> None:
    org = Org()
    state = org.device()
    for i in range(3):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=bytes(16),
            content=content(a=str(i)),
        )
    ids = [i.envelope_id for i in state.outbox]

    def mixed(request: Request) -> Response:
        statuses = [
            ("created", False),
            ("missing_parents", True),
            ("invalid", False),
            ("duplicate", False),
        ]
        results = [
            {"envelope_id": b64e(e), "status": s, "retryable": r}
            for e, (s, r) in zip(ids, statuses, strict=True)
        ]
        items = (ReceiptItem(ids[0], 1, 1), ReceiptItem(ids[3], 4, 2))
        receipt = Receipt(ORG, org.field.verify_key.key_id, 1, items).sign(org.server)
        return Response(200, {"results": results, "receipt": b64e(receipt.to_bytes())})

    summary, _ = drive(
        push_flow(state, server_key=org.server.verify_key, limits=Limits(), org_path=PATH), mixed
    )
    assert [i.envelope_id for i in state.outbox] == [ids[1]]  # retryable stays queued
    assert [(i.envelope_id, s) for i, s, _ in state.rejected] == [(ids[2], "invalid")]
    assert summary.purged == 2 and summary.rejected == 1


def test_reordered_results_are_refused() -> None:
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=bytes(16), content=content(a="1")
    )
    honest = HonestServer(org)

    def reorder(request: Request) -> Response:
        response = honest(request)
        return Response(200, {**response.body, "results": response.body["results"][::-1]})

    with pytest.raises(ServerMisbehaved):
        drive(
            push_flow(state, server_key=org.server.verify_key, limits=Limits(), org_path=PATH),
            reorder,
        )
    assert len(state.outbox) == 2


def test_a_refusal_raises_and_keeps_the_outbox() -> None:
    org = Org()
    state = org.device()
    seal_edit(
        state, roster=org.roster, signing_key=org.field, report=bytes(16), content=content(a="1")
    )

    def refuse(request: Request) -> Response:
        return Response(403, {"code": "device_revoked", "detail": "revoked"})

    with pytest.raises(SyncRefused) as info:
        drive(
            push_flow(state, server_key=org.server.verify_key, limits=Limits(), org_path=PATH),
            refuse,
        )
    assert info.value.code == "device_revoked"
    assert len(state.outbox) == 2


def test_a_roster_rollback_is_reported() -> None:
    org = Org()
    org.extend(lambda r: r)

    def old(request: Request) -> Response:
        return Response(200, {"versions": [b64e(v.to_bytes()) for v in org.chain[:2]]})

    with pytest.raises(ServerMisbehaved, match="older"):
        drive(roster_flow(org_path=PATH, trusted=org.roster), old)


def test_roster_flow_accepts_an_extension_and_refuses_a_substituted_key() -> None:
    org = Org()
    trusted = org.chain[0]

    def serve(request: Request) -> Response:
        return Response(200, {"versions": [b64e(v.to_bytes()) for v in org.chain]})

    newest, fresh = drive(roster_flow(org_path=PATH, trusted=trusted), serve)[0]
    assert newest.hash == org.roster.hash and fresh == org.chain[1:]
    mallory = SigningKey.generate()
    forged = org.roster.roster.with_member(
        Member(mallory.verify_key.key_id, mallory.verify_key, Role.FIELD)
    )
    forged_signed = forged.next_version(org.roster).sign(mallory)

    def inject(request: Request) -> Response:
        return Response(200, {"versions": [b64e(forged_signed.to_bytes())]})

    with pytest.raises(ServerMisbehaved):
        drive(roster_flow(org_path=PATH, trusted=org.roster), inject)


def _sealed(org: Org, n: int, report: bytes = bytes(16)) -> list[bytes]:
    state = org.device()
    for i in range(n):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=report,
            content=content(a=str(i)),
        )
    return [i.data for i in state.outbox]


@settings(max_examples=30)
@given(st.permutations(range(5)))
def test_view_state_does_not_depend_on_feed_order(order) -> None:
    org = Org()
    envelopes = _sealed(org, 4)
    view = org.view()
    for i in order:
        view.ingest(envelopes[i])
    assert view.report(bytes(16)).field("a").value == "3"
    assert view.findings() == []


def test_gaps_in_a_device_chain_are_findings() -> None:
    org = Org()
    envelopes = _sealed(org, 4)
    view = org.view()
    for data in envelopes[:2] + envelopes[3:]:
        view.ingest(data)
    assert [(f.kind, f.seq) for f in view.findings()] == [("gap", 3)]


def test_a_fork_in_a_device_chain_is_a_finding() -> None:
    org = Org()
    one = _sealed(org, 2)
    # Same key, same seqs, different content: an equivocating (or cloned) device.
    two = _sealed(org, 2)
    view = org.view()
    for data in one + two[2:]:
        view.ingest(data)
    assert "fork" in {f.kind for f in view.findings()}


def test_revisions_signed_after_revocation_are_flagged_and_not_shown() -> None:
    org = Org()
    envelopes = _sealed(org, 3)  # seqs 1..4
    org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=3))
    view = org.view()
    for data in envelopes:
        view.ingest(data)
    assert view.report(bytes(16)).field("a").value == "1"
    assert [(f.kind, f.seq) for f in view.findings()] == [("after-revocation", 4)]


def test_a_forged_revision_is_refused() -> None:
    org = Org()
    envelopes = _sealed(org, 1)
    view = org.view()
    from crypto import parse_envelope

    env = parse_envelope(envelopes[1])
    tampered = env.to_bytes().replace(env.signature, bytes(64))
    assert not view.ingest(tampered)
    assert [f.kind for f in view.findings()] == ["forged"]


def test_revocation_uses_the_servers_watermark() -> None:
    org = Org()
    device_id = org.field.verify_key.key_id
    devices = {"devices": [{"device_id": b64e(device_id), "watermark": 7}]}
    posted = []

    def server(request: Request) -> Response:
        if request.method == "GET":
            return Response(200, devices)
        posted.append(request)
        return Response(201, {"version": 3})

    newest, _ = drive(
        revoke_flow(org_path=PATH, trusted=org.roster, signing_key=org.coord, device_id=device_id),
        server,
    )
    assert newest.roster.member(device_id).revoked_after == 7 and len(posted) == 1


def test_a_cursor_from_a_restored_server_restarts_the_feed_and_says_so() -> None:
    org = Org()
    envelopes = _sealed(org, 2)
    view = org.view()
    calls: list[dict[str, str]] = []

    def server(request: Request) -> Response:
        calls.append(dict(request.query))
        if request.query.get("cursor") == "stale":
            return Response(409, {"code": "cursor_from_other_epoch", "detail": "restored"})
        return Response(
            200,
            {
                "items": [
                    {"server_seq": i + 1, "envelope": e, "flags": []}
                    for i, e in enumerate(envelopes)
                ],
                "cursor": "e2:3",
                "more": False,
            },
        )

    (cursor, rewound), checkpoints = drive(pull_flow(view, org_path=PATH, cursor="stale"), server)
    assert rewound and cursor == "e2:3"
    assert "cursor" not in calls[1]
    assert [c.event for c in checkpoints] == ["ServerWentBackInTime", "ChangesPulled"]
    assert len(checkpoints[1].envelopes) == 3
    assert view.report(bytes(16)).field("a").value == "1"


def test_a_restored_server_is_healed_by_reposting_the_verified_versions_it_lost() -> None:
    # PROTOCOL §15.4, §15.6: never adopt the older roster; a coordinator re-uploads.
    org = Org()
    org.extend(lambda r: r)  # v3, which the restored server lost

    def restored(request: Request) -> Response:
        since = int(request.query["since"])
        return Response(200, {"versions": [b64e(v.to_bytes()) for v in org.chain[since:2]]})

    from sync.engine import RosterRollback, repair_roster_flow

    with pytest.raises(RosterRollback) as info:
        drive(roster_flow(org_path=PATH, trusted=org.roster), restored)
    assert info.value.served == 2
    posted: list[SignedRoster] = []

    def accept(request: Request) -> Response:
        posted.append(SignedRoster.parse(b64d(request.body["roster"])))
        return Response(200, {"version": posted[-1].roster.version})

    count, _ = drive(repair_roster_flow(org_path=PATH, chain=org.chain, served=2), accept)
    assert count == 1 and [p.hash for p in posted] == [org.roster.hash]


def test_an_epoch_sealed_to_a_key_the_roster_did_not_list_is_a_finding() -> None:
    # PROTOCOL §4.3 item 6: a device never encrypts to a key the roster did not sign.
    from crypto import ChainKey, seal_sender_key

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
    for data in _sealed(org, 1):
        honest.ingest(data)
    assert honest.findings() == []


@settings(max_examples=20)
@given(st.randoms(use_true_random=False))
def test_two_coordinators_with_the_same_envelopes_show_the_same_state(rnd) -> None:
    # PROTOCOL §14.7 item 1, §15.5 item 3.
    org = Org()
    second, kem2 = SigningKey.generate(), KemPrivateKey.generate()
    member = Member(second.verify_key.key_id, second.verify_key, Role.COORDINATOR, kem2.public_key)
    org.extend(lambda r: r.with_member(member))
    field_state, coord_state = (
        org.device(),
        DeviceState(org_id=ORG, device_id=org.coord.verify_key.key_id),
    )
    report = bytes(16)
    seal_edit(
        field_state,
        roster=org.roster,
        signing_key=org.field,
        report=report,
        content=content(a="x", b="1"),
    )
    root = field_state.heads[report]
    seal_edit(
        field_state,
        roster=org.roster,
        signing_key=org.field,
        report=report,
        content=content(a="field"),
    )
    seal_edit(
        coord_state,
        roster=org.roster,
        signing_key=org.coord,
        report=report,
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
    assert set(one.report(report).field("a").values) == {"field", "coord"}
    assert one.report(report).field("b").value == "1"


def test_a_seized_device_cannot_open_what_it_sealed() -> None:
    # PROTOCOL §4.3 item 4, §15.3 item 3 (D2): only the next chain key stays on the device.
    from crypto import ChainKey, VerificationFailed, open_revision, parse_envelope

    org = Org()
    state = org.device()
    sealed = seal_edit(
        state, roster=org.roster, signing_key=org.field, report=bytes(16), content=content(a="x")
    )
    envelope = parse_envelope(sealed.to_bytes())
    held = ChainKey(state.chain_key)
    for candidate in (held.advance()[0], held.advance()[1].advance()[0]):
        with pytest.raises(VerificationFailed):
            open_revision(envelope, author=org.field.verify_key, message_key=candidate)
    view = org.view()
    for item in state.outbox:
        view.ingest(item.data)
    assert view.report(bytes(16)).field("a").value == "x"


def _invited(org: Org, key: SigningKey, *, role=Role.FIELD, signer=None, kem=None, prove=True):
    """An enrollment of ``key`` against a fresh invite, as the server lists it."""
    doc, code = Invite.create(
        org_id=ORG,
        role=role,
        expires_at=2**40,
        roster_fingerprint=org.roster.hash,
        server_url="http://127.0.0.1",
        signing_key=signer or org.coord,
    )
    secret = code.secret if prove else secrets.token_bytes(32)
    label = seal_label(
        "phone", secret=secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    enrollment = Enrollment(ORG, code.invite_id, key.verify_key, role, label, kem)
    device = {
        "device_id": b64e(enrollment.device_id),
        "enrollment": b64e(enrollment.sign(key).to_bytes()),
        "invite": b64e(doc.to_bytes()),
    }
    return device, code


def _admit(org: Org, devices: list[dict], secrets_by_invite: dict[bytes, bytes]):
    posted: list[SignedRoster] = []

    def server(request: Request) -> Response:
        if request.method == "GET":
            return Response(200, {"devices": devices})
        posted.append(SignedRoster.parse(b64d(request.body["roster"])))
        return Response(201, {"version": posted[-1].roster.version})

    flow = admit_flow(
        org_path=PATH, trusted=org.roster, signing_key=org.coord, invite_secrets=secrets_by_invite
    )
    admission, _ = drive(flow, server)
    assert posted == ([admission.roster] if admission.admitted else [])
    return admission


def test_unknown_devices_are_held_then_shown_pending_admission_then_verified() -> None:
    # PROTOCOL §6.5, §6.6, §15.5 item 2.
    org = Org()
    newcomer = SigningKey.generate()
    state = DeviceState(org_id=ORG, device_id=newcomer.verify_key.key_id)
    seal_edit(
        state, roster=org.roster, signing_key=newcomer, report=bytes(16), content=content(a="hi")
    )
    view = org.view()
    for item in state.outbox:
        assert view.ingest(item.data)  # kept, not dropped
    assert view.report(bytes(16)) is None
    assert {f.kind for f in view.findings()} == {"unknown-device"}

    device, code = _invited(org, newcomer)
    pending = _admit(org, [device], {})  # not our invite secret: vouched, not admitted
    view.update_trust(pending.roster, pending.verified)
    assert view.report(bytes(16)).field("a").value == "hi"
    assert [f.kind for f in view.findings()] == ["pending-admission"]

    admission = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.admitted == ((code.invite_id, newcomer.verify_key.key_id),)
    assert admission.roster.roster.member(newcomer.verify_key.key_id).role is Role.FIELD
    view.update_trust(admission.roster, admission.verified)
    assert view.findings() == []


def test_a_key_enrolled_by_the_server_against_a_real_invite_is_not_admitted() -> None:
    # PROTOCOL §6.5: the server holds the invite document, never the secret.
    org = Org()
    device, code = _invited(org, SigningKey.generate(), prove=False)
    admission = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.admitted == () and admission.roster is org.roster
    assert "none admitted" in admission.refused[0]


def test_an_invite_admits_at_most_one_device() -> None:
    org = Org()
    first, code = _invited(org, SigningKey.generate())
    other = SigningKey.generate()
    label = seal_label(
        "x", secret=code.secret, invite_id=code.invite_id, device_id=other.verify_key.key_id
    )
    second = dict(
        first,
        enrollment=b64e(
            Enrollment(ORG, code.invite_id, other.verify_key, Role.FIELD, label)
            .sign(other)
            .to_bytes()
        ),
    )
    admission = _admit(org, [first, second], {code.invite_id: code.secret})
    assert admission.admitted == () and len(admission.refused) == 1


def test_an_enrollment_bound_to_an_invite_not_signed_by_a_coordinator_is_not_admitted() -> None:
    org = Org()
    device, code = _invited(org, SigningKey.generate(), signer=org.field)  # cannot invite
    admission = _admit(org, [device], {code.invite_id: code.secret})
    assert admission.roster is org.roster and admission.verified == ()


def test_a_coordinator_enrollment_is_admitted_with_its_hpke_key() -> None:
    # PROTOCOL §15.7 item 2.
    org = Org()
    newcomer, kem = SigningKey.generate(), KemPrivateKey.generate()
    device, code = _invited(org, newcomer, role=Role.COORDINATOR, kem=kem.public_key)
    admission = _admit(org, [device], {code.invite_id: code.secret})
    member = admission.roster.roster.member(newcomer.verify_key.key_id)
    assert member.role is Role.COORDINATOR and member.kem_key == kem.public_key
    assert kem.public_key in admission.roster.roster.recipients()


@pytest.mark.parametrize(
    "page",
    [
        [],  # not a map
        {"items": "x", "cursor": "c", "more": False},  # items not a list
        {"items": [{"server_seq": 1, "envelope": "text, not bytes"}], "more": False},
        {"items": [7], "more": False},
    ],
)
def test_a_feed_page_of_the_wrong_shape_is_server_misbehaviour(page: object) -> None:
    """The coordinator pulls CBOR pages (PROTOCOL §9.1): envelopes must be byte strings."""
    view = Org().view()
    with pytest.raises(ServerMisbehaved):
        drive(pull_flow(view, org_path=PATH, cursor=None), lambda request: Response(200, page))
