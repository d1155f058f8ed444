"""One sync run in the protocol's order; interrupted syncs (PROTOCOL §15, §15.4, §15.6, §15.8)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crypto import SigningKey, encoding, parse_envelope
from crypto.stream import Manifest
from sync.client import (
    AttachmentStatesSeen,
    AttachmentsWaitForAdmission,
    BatchAcknowledged,
    ChangesPulled,
    CoordinatorView,
    DeviceRevoked,
    DevicesAdmitted,
    DeviceState,
    Event,
    ItemRefused,
    LogCheckpointAdopted,
    LogPosition,
    OwnRevisionsRepublished,
    PendingUpload,
    Request,
    Response,
    RosterFresh,
    RosterKnownAt,
    RosterReposted,
    RosterRolledBack,
    RosterStale,
    RosterVerified,
    ServerMisbehaved,
    ServerWentBackInTime,
    SyncInputs,
    drive,
    push_flow,
    seal_edit,
    sync_flow,
)
from sync.cursor import encode_cursor
from sync.freshness import Freshness
from sync.messages import b64decode, b64encode
from sync.roster import Role, SignedRoster
from tests.sync.client.support import (
    ORG,
    PATH,
    REPORT,
    HonestLog,
    HonestServer,
    Org,
    content,
    field_of,
    filler_id,
    invited,
    of_type,
    play,
    problem,
    pushed_envelopes,
    serve_feed,
)


def _limits(**overrides: int) -> dict[str, int]:
    limits = {
        "max_batch_items": 100,
        "max_batch_bytes": 1024 * 1024,
        "max_envelope_bytes": 256 * 1024,
        "max_feed_items": 500,
        "replay_window_seconds": 300,
        "device_requests_per_minute": 600,
        "org_requests_per_minute": 6000,
        "org_quota_bytes": 10**9,
    }
    return limits | overrides


class OrgServer:
    """An honest server for whole syncs: description, roster, push, devices, feed, uploads."""

    def __init__(self, org: Org, chain: list[SignedRoster] | None = None) -> None:
        self.org = org
        self.chain = list(org.chain if chain is None else chain)
        self.push = HonestServer(org)
        self.devices: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.restored_from: set[str] = set()  # cursors of the server before its restore
        self.freshness: bytes | None = None  # the newest freshness statement (§18.2)
        self.description = Response.of_json(
            200,
            {
                "protocol_version": 1,
                "suite": 1,
                "server_key": b64encode(org.server.verify_key.raw),
                "limits": _limits(),
            },
        )

    def steps(self) -> list[tuple[str, str]]:
        return [(r.method, r.path.removeprefix(PATH)) for r in self.requests]

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        route = (request.method, request.path.removeprefix(PATH))
        if route == ("GET", "/v1/server"):
            assert not request.signed
            return self.description
        if route == ("GET", "/roster"):
            since = int(request.query["since"])
            versions = [v for v in self.chain if v.roster.version > since]
            answer: dict[str, Any] = {"versions": [b64encode(v.to_bytes()) for v in versions]}
            if self.freshness is not None:
                answer["freshness"] = b64encode(self.freshness)
            return Response.of_json(200, answer)
        if route == ("POST", "/roster/freshness"):
            assert request.body is not None
            self.freshness = b64decode(request.body["freshness"])
            statement = Freshness.verify(self.freshness, self.chain[-1])
            return Response.of_json(
                200, {"version": statement.version, "issued_at": statement.issued_at}
            )
        if route == ("POST", "/roster"):
            assert request.body is not None
            candidate = SignedRoster.parse(b64decode(request.body["roster"]))
            assert candidate.roster.version == self.chain[-1].roster.version + 1
            self.chain.append(candidate)
            return Response.of_json(201, {"version": candidate.roster.version})
        if route == ("POST", "/push"):
            return self.push(request)
        if route == ("GET", "/devices"):
            return Response.of_json(200, {"devices": self.devices})
        if route == ("GET", "/changes"):
            if request.query.get("cursor") in self.restored_from:
                return problem(409, "cursor_from_other_epoch", "restored")
            return serve_feed(list(self.push.raw.values()), request, server=self.org.server)
        if route == ("GET", "/log"):
            return self.push.log.answer(request)
        if route == ("GET", "/attachments"):
            return Response.of_json(200, {"uploads": [], "more": False})
        if route == ("GET", "/grants"):
            return Response.of_json(200, {"grants": [], "more": False})
        raise AssertionError(f"unexpected request {route}")


def _inputs(org: Org, state: DeviceState, **kw: Any) -> SyncInputs:
    role = kw.pop("role", Role.FIELD)
    key = kw.pop("signing_key", org.coord if role is Role.COORDINATOR else org.field)
    return SyncInputs(
        org_path=PATH,
        role=role,
        signing_key=key,
        trusted=kw.pop("trusted", org.roster),
        roster_chain=kw.pop("roster_chain", org.chain),
        state=state,
        clock=lambda: 0.0,
        **kw,
    )


def _edits(org: Org, state: DeviceState, key: SigningKey, n: int) -> None:
    for i in range(n):
        seal_edit(
            state, roster=org.roster, signing_key=key, report=REPORT, content=content(a=str(i))
        )


def _coordinator_state(org: Org) -> DeviceState:
    return DeviceState(org_id=ORG, device_id=org.coord.verify_key.key_id)


def test_a_field_sync_checks_the_roster_then_pushes() -> None:
    # PROTOCOL §15.4 item 1 (every sync starts with the roster), §15.2, §15.3.
    org = Org()
    state = org.device()
    _edits(org, state, org.field, 2)
    server = OrgServer(org)
    report, events = play(sync_flow(_inputs(org, state)), server)
    assert server.steps() == [
        ("GET", "/v1/server"),
        ("GET", "/roster"),
        ("GET", "/log"),
        ("POST", "/push"),
    ]
    assert server.requests[1].query == {"since": "1"}
    # The empty log's checkpoint, then the receipt's (proven from it by ?since=0).
    assert [type(e) for e in events] == [
        RosterVerified,
        RosterStale,  # no coordinator signed a freshness statement yet (§18.3)
        LogCheckpointAdopted,
        LogCheckpointAdopted,
        BatchAcknowledged,
    ]
    assert state.outbox == [] and report.push.purged == 3
    assert report.roster == org.roster and not report.revoked and report.pull is None


def test_a_coordinator_sync_admits_pulls_and_reads_the_upload_states() -> None:
    # PROTOCOL §15: push, then the device list once, admission, the feed, the upload states.
    org = Org()
    field = org.device()
    _edits(org, field, org.field, 2)
    server = OrgServer(org)
    play(
        push_flow(
            field,
            server_key=org.server.verify_key,
            max_items=100,
            max_bytes=10**6,
            org_path=PATH,
            log=LogPosition(ORG, org.server.verify_key),
        ),
        server.push,
    )
    newcomer = SigningKey.generate()
    device, code = invited(org, newcomer)
    server.devices = [device]
    view = org.view()
    inputs = _inputs(
        org,
        _coordinator_state(org),
        role=Role.COORDINATOR,
        view=view,
        invite_secrets={code.invite_id: code.secret},
    )
    report, events = play(sync_flow(inputs), server)
    assert server.steps()[1:] == [
        ("GET", "/roster"),
        ("POST", "/roster/freshness"),
        ("GET", "/log"),
        ("GET", "/devices"),
        ("POST", "/roster"),
        ("GET", "/changes"),
        ("GET", "/grants"),  # the grant log (§19); the newcomer is a field device
        ("GET", "/attachments"),
    ]
    assert [type(e) for e in events] == [
        RosterVerified,
        RosterFresh,  # its own statement, accepted (§18.3 item 4)
        LogCheckpointAdopted,  # the log of 3, from /log
        DevicesAdmitted,
        ChangesPulled,  # the feed's checkpoint is the same one: nothing new to adopt
        RosterKnownAt,  # the versions the view holds, first held at log size 3 (§18.4)
        AttachmentStatesSeen,
    ]
    assert of_type(events, RosterKnownAt) == [RosterKnownAt(((2, 3), (3, 3)))]
    assert report.roster.roster.member(newcomer.verify_key.key_id) is not None
    assert report.roster == server.chain[-1] and view.roster == report.roster
    assert report.pull is not None and report.pull.pulled == 3 and report.pull.finished
    assert field_of(view, REPORT, "a").value == "1" and view.findings() == []


def test_a_device_revoked_in_the_verified_roster_stops_and_keeps_its_queue() -> None:
    # PROTOCOL §15.4 item 3.
    org = Org()
    state = org.device()
    _edits(org, state, org.field, 1)
    trusted = org.roster
    org.extend(lambda r: r.revoke(org.field.verify_key.key_id, after_seq=5))
    server = OrgServer(org)
    report, events = play(sync_flow(_inputs(org, state, trusted=trusted)), server)
    assert report.revoked and events[-1] == DeviceRevoked(5)
    assert ("POST", "/push") not in server.steps()
    assert len(state.outbox) == 2


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.FIELD])
def test_a_rolled_back_roster_is_kept_and_a_coordinator_reposts_it(role: Role) -> None:
    # PROTOCOL §15.4 item 2: never adopted; coordinators re-post what the server lost.
    org = Org()
    org.extend(lambda r: r)  # v3, which the restored server lost
    server = OrgServer(org, chain=org.chain[:2])
    state = org.device() if role is Role.FIELD else _coordinator_state(org)
    report, events = play(sync_flow(_inputs(org, state, role=role)), server)
    assert report.rolled_back and report.roster == org.roster
    assert RosterRolledBack(served=2, trusted=3) in events
    if role is Role.COORDINATOR:
        assert RosterReposted(1) in events and server.chain == org.chain
    else:
        assert not of_type(events, RosterReposted) and len(server.chain) == 2


def test_a_coordinator_republishes_its_own_envelopes_after_the_server_went_back_in_time() -> None:
    # PROTOCOL §9.2, §15.6: re-pull from the start, re-push what it holds, delete nothing.
    org = Org()
    own = _coordinator_state(org)
    _edits(org, own, org.coord, 1)
    view = org.view()
    for item in own.outbox:
        view.ingest(item.data)
    own.outbox.clear()  # purged long ago: only the view still holds them
    stale = encode_cursor(b"e" * 16, 40)
    server = OrgServer(org)  # restored: it holds none of it
    server.restored_from.add(stale)
    before = HonestLog(org.server, [filler_id(s) for s in range(1, 41)])
    inputs = _inputs(
        org,
        own,
        role=Role.COORDINATOR,
        view=view,
        cursor=stale,
        log_checkpoint=before.checkpoint(),
        log_frontier=before.frontier.to_bytes(),
    )
    report, events = play(sync_flow(inputs), server)
    assert ServerWentBackInTime() in events and OwnRevisionsRepublished(2) in events
    assert report.republished == 2 and report.pull is not None and report.pull.rewound
    assert set(server.push.stored) == set(view.envelopes)
    assert field_of(view, REPORT, "a").value == "0"


def test_the_servers_batch_limits_shape_the_push() -> None:
    # PROTOCOL §15.2 item 1: batches within the server's max_batch_items.
    org = Org()
    state = org.device()
    _edits(org, state, org.field, 2)
    server = OrgServer(org)
    server.description = Response.of_json(
        200,
        {
            "protocol_version": 1,
            "suite": 1,
            "server_key": b64encode(org.server.verify_key.raw),
            "limits": _limits(max_batch_items=2),
        },
    )
    play(sync_flow(_inputs(org, state)), server)
    assert [len(pushed_envelopes(r)) for r in server.push.requests] == [2, 1]


def test_an_unreachable_server_description_falls_back_to_the_protocol_defaults() -> None:
    org = Org()
    state = org.device()
    _edits(org, state, org.field, 2)
    server = OrgServer(org)
    server.description = problem(503, "unavailable")
    play(sync_flow(_inputs(org, state)), server)
    assert [len(pushed_envelopes(r)) for r in server.push.requests] == [3]
    assert state.outbox == []


def test_a_malformed_server_description_is_misbehaviour() -> None:
    org = Org()
    state = org.device()
    _edits(org, state, org.field, 1)
    server = OrgServer(org)
    server.description = Response.of_json(200, {"limits": {"max_batch_items": "many"}})
    with pytest.raises(ServerMisbehaved, match="server description"):
        play(sync_flow(_inputs(org, state)), server)
    assert server.steps() == [("GET", "/v1/server")] and len(state.outbox) == 2


def test_uploads_wait_until_the_device_is_admitted() -> None:
    # A report never waits for its media; media waits for admission, and nothing is wrong.
    org = Org()
    newcomer = SigningKey.generate()
    state = DeviceState(org_id=ORG, device_id=newcomer.verify_key.key_id)
    _edits(org, state, newcomer, 1)
    upload = PendingUpload(bytes(16), "photo.jpg", Manifest(1024, 1, 1024, bytes(32)), "x.sealed")
    server = OrgServer(org)
    inputs = _inputs(org, state, signing_key=newcomer, uploads=[upload])
    report, events = play(sync_flow(inputs), server)
    assert events[-1] == AttachmentsWaitForAdmission(1) and report.uploads_waiting == 1
    assert all("/attachments" not in path for _, path in server.steps())
    assert state.outbox == []


# -- interrupted syncs: a stateful property (§15.1, §15.2, §15.3, §15.8)

REPORTS = [bytes([i]) * 16 for i in range(3)]


class CrashedMidSync(Exception):
    pass


class DeviceSync(RuleBasedStateMachine):
    """A device writes edits and pushes over a link that loses replies, and a client that
    crashes between the server's commit and its own persist (state reverts to what was last
    persisted); a coordinator pulls the server's envelopes in any order with duplicates.
    Invariants: nothing sealed is ever lost (it is queued or stored), the server never sees
    two envelopes for one device sequence number, and after a final clean sync the
    coordinator's merged state equals the model and has no findings."""

    def __init__(self) -> None:
        super().__init__()
        self.org = Org()
        self.state = self.org.device()
        self.persisted = encoding.encode(self.state.to_cbor())
        self.server = HonestServer(self.org)
        self.sealed: set[bytes] = set()
        self.by_seq: dict[int, bytes] = {}
        self.model: dict[bytes, str] = {}

    def persist(self) -> None:
        self.persisted = encoding.encode(self.state.to_cbor())

    def restart(self) -> None:
        self.state = DeviceState.from_cbor(encoding.decode(self.persisted))

    @rule(report=st.sampled_from(REPORTS), value=st.text(min_size=1, max_size=8))
    def write(self, report: bytes, value: str) -> None:
        seal_edit(
            self.state,
            roster=self.org.roster,
            signing_key=self.org.field,
            report=report,
            content=content(v=value),
        )
        self.persist()  # sealing and persisting are one local transaction (§15.1 item 1)
        self.sealed.update(i.envelope_id for i in self.state.outbox)
        self.model[report] = value

    def on_event(self, event: Event) -> None:
        if isinstance(event, (BatchAcknowledged, ItemRefused)):
            self.persist()  # what these events name: the device state

    @rule(
        batch=st.integers(1, 4),
        crash_at=st.one_of(st.none(), st.integers(0, 4)),
        lose_reply=st.booleans(),
    )
    def push(self, batch: int, crash_at: int | None, lose_reply: bool) -> None:
        flow = push_flow(
            self.state,
            server_key=self.org.server.verify_key,
            max_items=batch,
            max_bytes=10**6,
            org_path=PATH,
            log=LogPosition(ORG, self.org.server.verify_key),
        )
        exchanges = 0

        def send(request: Request) -> Response:
            nonlocal exchanges
            reply = self.server(request)  # the server commits...
            if crash_at is not None and exchanges == crash_at:
                # ...and the reply is lost on the link, or the client dies before it persists.
                raise ConnectionError if lose_reply else CrashedMidSync
            exchanges += 1
            return reply

        try:
            drive(flow, send, self.on_event)
        except ConnectionError:
            pass  # the process lives on with its in-memory state; the next sync retries
        except CrashedMidSync:
            self.restart()

    @invariant()
    def nothing_sealed_is_lost(self) -> None:
        queued = {i.envelope_id for i in self.state.outbox}
        assert self.sealed <= queued | set(self.server.stored)

    @invariant()
    def the_server_never_sees_a_sequence_number_twice(self) -> None:
        for envelope_id in self.server.stored:
            seq = parse_envelope(self.server.raw[envelope_id]).header.seq
            assert self.by_seq.setdefault(seq, envelope_id) == envelope_id

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def final_sync_converges(self, data: st.DataObject) -> None:
        for _ in range(3):  # a clean sync (each item is tried once per run)
            self.push(batch=100, crash_at=None, lose_reply=False)
        assert self.state.outbox == []
        view = CoordinatorView(roster=self.org.roster, kem_key=self.org.coord_kem)
        envelopes = list(self.server.raw.values())
        order = data.draw(st.permutations(envelopes + envelopes[: len(envelopes) // 2]))
        for raw in order:
            view.ingest(raw)
        assert view.findings() == []
        for report, value in self.model.items():
            assert field_of(view, report, "v").value == value


TestDeviceSync = DeviceSync.TestCase
TestDeviceSync.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
