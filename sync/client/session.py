"""One sync run, in the order PROTOCOL §15 states, as a single flow.

Theory of operation:
1. ``GET /v1/server``: the server's batch limits (a malformed answer is misbehaviour;
   an unreachable description falls back to the protocol defaults).
2. The roster (`roster_flow`): verified from the trusted version; a rollback is
   reported and the trusted roster kept; coordinators re-post what a restored server
   lost (`repair_roster_flow`).  Then its freshness (`freshness_flow`, §18.3):
   coordinators post a statement, every client says `RosterFresh` or `RosterStale`.
3. A device revoked in the verified roster stops here (`DeviceRevoked`), queue kept.
   Then the log (`log_flow`): the current checkpoint, proven to extend the held one.
4. Push the outbox (`push_flow`); receipts purge once their checkpoint holds them.
   Then, for an admitted member, the relay queue (`relay_flow`, §23.3).
5. Coordinators: the device list, once; admission (`admit_flow`); the feed
   (`pull_flow`) into the view; the witnesses of the fresh revisions (`witness_flow`,
   §17.8) and their rosters (`stale_roster`, §18.4); after a server went back in time,
   re-publication of the coordinator's own envelopes; the upload states.
6. Attachments last (a report never waits for its media), and only once this device
   is admitted: before that, `AttachmentsWaitForAdmission` and nothing is wrong.
Everything the driver must persist arrives as an event, after its answer validated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from crypto import KemPublicKey, SigningKey, parse_envelope
from sync.client.admission import admit_flow, devices_flow
from sync.client.chain import DeviceState, OutboxItem
from sync.client.events import (
    AttachmentsWaitForAdmission,
    DeviceRevoked,
    OwnRevisionsRepublished,
    RosterKnownAt,
)
from sync.client.flow import (
    DEFAULT_BOUNDS,
    Bounds,
    Flow,
    Request,
    Response,
    decode,
)
from sync.client.grants import epochs_to_grant, post_grants_flow, pull_grants_flow
from sync.client.log import LogPosition, log_flow
from sync.client.pull import PullResult, cursor_position, pull_flow
from sync.client.push import PushSummary, push_flow
from sync.client.relay import RelaySummary, relay_flow
from sync.client.roster import FreshnessSettings, freshness_flow, repair_roster_flow, roster_flow
from sync.client.staleness import first_known, stale_roster
from sync.client.upload import PendingUpload, attachment_states_flow, upload_all_flow
from sync.client.view import CoordinatorView
from sync.client.witness import witness_flow, witnesses_in
from sync.merkle import Frontier
from sync.messages import ServerInfo
from sync.roster import Role, Roster, SignedRoster

__all__ = ["DEFAULT_BATCH_BYTES", "DEFAULT_BATCH_ITEMS", "SyncInputs", "SyncReport", "sync_flow"]

DEFAULT_BATCH_ITEMS = 100
DEFAULT_BATCH_BYTES = 1024 * 1024
"""Batch limits when the server does not describe itself (PROTOCOL §7.4)."""


@dataclass(slots=True)
class SyncInputs:
    """What one sync run needs; the mutable ``state`` and ``view`` are updated in place."""

    org_path: str
    role: Role
    signing_key: SigningKey
    trusted: SignedRoster
    roster_chain: Sequence[SignedRoster]
    state: DeviceState
    clock: Callable[[], float]
    view: CoordinatorView | None = None
    cursor: str | None = None
    invite_secrets: Mapping[bytes, bytes] = field(default_factory=dict)
    cancelled_invites: frozenset[bytes] = frozenset()  # §6.7: cancelled by this coordinator
    cancel_acknowledged: Mapping[bytes, bytes | None] = field(default_factory=dict)  # §6.7
    uploads: Sequence[PendingUpload] = ()
    read_chunk: Callable[[PendingUpload, int], bytes] | None = None
    bounds: Bounds = DEFAULT_BOUNDS
    batch_size: int | None = None
    log_checkpoint: bytes | None = None  # the newest verified checkpoint (§17.6)
    log_frontier: bytes = b""  # coordinators: the pulled tree at ``cursor``
    freshness: FreshnessSettings = field(default_factory=FreshnessSettings)  # §18.3
    witnesses_checked: frozenset[bytes] = frozenset()  # coordinators: §17.8, done before
    roster_known_at: Mapping[int, int] = field(default_factory=dict)  # coordinators: §18.4
    relay: Sequence[bytes] = ()  # envelopes of other devices to relay (§23.3)
    carried: frozenset[bytes] = frozenset()  # coordinators: imported, not yet in the feed
    # Coordinators, grants (§19): the grant list position; whom to grant epochs to (device
    # id -> only epochs first stored at or after this time, or None for all; coordinators
    # admitted in this run are added); when each key envelope was first stored here; and
    # the wall clock (Unix seconds) to date grants with.
    grants_after: int = 0
    grant_to: Mapping[bytes, int | None] = field(default_factory=dict)
    first_seen: Mapping[bytes, int] = field(default_factory=dict)
    wall_clock: Callable[[], int] = lambda: 0


@dataclass(slots=True)
class SyncReport:
    """What the run did (the events said it as it happened)."""

    roster: SignedRoster
    push: PushSummary
    revoked: bool = False
    rolled_back: bool = False
    pull: PullResult | None = None
    republished: int = 0
    uploads_failed: int = 0
    uploads_done: int = 0
    uploads_waiting: int = 0
    log: LogPosition | None = None
    fresh: bool | None = None  # §18.3: a fresh statement for the trusted roster
    relay: RelaySummary | None = None  # §23.3: None when there was nothing to relay
    granted: int = 0  # §19: epochs this coordinator granted in this run


def _batch_limits(response: Response | tuple[Response, ...] | None) -> tuple[int, int]:
    if not isinstance(response, Response) or response.status != 200:
        return DEFAULT_BATCH_ITEMS, DEFAULT_BATCH_BYTES
    info = decode(response, ServerInfo, what="server description")
    return max(1, info.limits.max_batch_items), max(1024, info.limits.max_batch_bytes)


def sync_flow(inputs: SyncInputs) -> Flow[SyncReport]:
    """Run one whole sync (see the module docstring for the order)."""
    max_items, max_bytes = _batch_limits(
        (yield Request("GET", "/v1/server", signed=False, max_answer_bytes=64 * 1024))
    )
    if inputs.batch_size:
        max_items = min(max_items, inputs.batch_size)
    org_path, device_id = inputs.org_path, inputs.state.device_id
    check = yield from roster_flow(org_path=org_path, trusted=inputs.trusted)
    roster = check.roster
    if check.rolled_back_to is not None and inputs.role is Role.COORDINATOR:
        yield from repair_roster_flow(
            org_path=org_path, chain=inputs.roster_chain, served=check.rolled_back_to
        )
    report = SyncReport(
        roster=roster, push=PushSummary(), rolled_back=check.rolled_back_to is not None
    )
    me = roster.roster.member(device_id)
    if me is not None and me.revoked_after is not None:
        report.revoked = True
        yield DeviceRevoked(me.revoked_after)
        return report
    signer = inputs.signing_key if inputs.role is Role.COORDINATOR else None
    report.fresh = yield from freshness_flow(
        check, org_path=org_path, settings=inputs.freshness, signing_key=signer
    )
    report.log = _log_position(inputs, roster)
    yield from log_flow(report.log, org_path=org_path)
    report.push = yield from push_flow(
        inputs.state,
        server_key=roster.roster.server_key,
        max_items=max_items,
        max_bytes=max_bytes,
        org_path=org_path,
        log=report.log,
    )
    if inputs.relay and me is not None and me.active:  # only admitted members relay
        report.relay = yield from relay_flow(
            inputs.relay,
            org_id=inputs.state.org_id,
            device_id=device_id,
            server_key=roster.roster.server_key,
            max_items=max_items,
            max_bytes=max_bytes,
            org_path=org_path,
            log=report.log,
        )
    if inputs.role is Role.COORDINATOR and inputs.view is not None:
        yield from _coordinate(inputs, report, max_bytes)
        roster = report.roster
    me = roster.roster.member(device_id)
    if inputs.uploads and me is None:
        report.uploads_waiting = len(inputs.uploads)
        yield AttachmentsWaitForAdmission(len(inputs.uploads))
    elif inputs.uploads:
        if inputs.read_chunk is None:
            raise ValueError("uploads need read_chunk")
        report.uploads_done, report.uploads_failed = yield from upload_all_flow(
            inputs.uploads, org_path=org_path, read_chunk=inputs.read_chunk
        )
    return report


def _log_position(inputs: SyncInputs, roster: SignedRoster) -> LogPosition:
    frontier = None
    if inputs.cursor:
        try:
            size = cursor_position(inputs.cursor)[1]
            frontier = Frontier.from_bytes(size, inputs.log_frontier)
        except ValueError:
            frontier = None  # not the tree at the cursor: the pull starts over (pull_flow)
    return LogPosition.restore(
        inputs.state.org_id,
        roster.roster.server_key,
        inputs.log_checkpoint,
        frontier,
        device=inputs.state,
    )


def _coordinate(inputs: SyncInputs, report: SyncReport, max_bytes: int) -> Flow[None]:
    view = inputs.view
    assert view is not None and report.log is not None
    devices = yield from devices_flow(org_path=inputs.org_path)
    admission = yield from admit_flow(
        org_path=inputs.org_path,
        trusted=report.roster,
        signing_key=inputs.signing_key,
        invite_secrets=inputs.invite_secrets,
        devices=devices,
        cancelled=inputs.cancelled_invites,
        acknowledged=inputs.cancel_acknowledged,
    )
    report.roster = admission.roster
    view.update_trust(admission.roster, admission.verified)
    report.pull = yield from pull_flow(
        view,
        org_path=inputs.org_path,
        cursor=inputs.cursor,
        log=report.log,
        bounds=inputs.bounds,
        clock=inputs.clock,
        carried=inputs.carried,
    )
    yield from _grant(inputs, report, admission.admitted)
    yield from witness_flow(
        report.log,
        witnesses_in(report.pull.stored),
        org_path=inputs.org_path,
        checked=inputs.witnesses_checked,
    )
    known = first_known(view.history, inputs.roster_known_at, report.log.size)
    known_at = {**inputs.roster_known_at, **known}
    yield from stale_roster(report.pull.stored, view.history, known_at)
    if known:
        yield RosterKnownAt(tuple(sorted(known.items())))
    if report.pull.rewound:
        report.republished = yield from _republish_own(inputs, report, max_bytes)
    yield from attachment_states_flow(org_path=inputs.org_path)


def _grant(
    inputs: SyncInputs, report: SyncReport, admitted: Sequence[tuple[bytes, bytes]]
) -> Flow[None]:
    """Pull the grant list into the view, then grant the epochs this coordinator holds to
    each coordinator it was asked to (and to those it admitted now) that lacks them, and to
    the organisation's recovery key (§20.3: the epochs sealed before it was set up)."""
    view = inputs.view
    assert view is not None
    yield from pull_grants_flow(org_path=inputs.org_path, after=inputs.grants_after, view=view)
    roster = report.roster.roster
    opened = {key: ck0 for key, (ck0, _, _) in view._sender_keys.items()}
    for recipient, since in _grantees(inputs, roster, admitted):
        epochs = epochs_to_grant(
            view.envelopes,
            opened,
            view.grants,
            recipient,
            first_seen=inputs.first_seen,
            since=since,
        )
        grants = yield from post_grants_flow(
            org_path=inputs.org_path,
            org_id=roster.org_id,
            roster_version=roster.version,
            issued_at=inputs.wall_clock(),
            epochs=epochs,
            recipient=recipient,
            signing_key=inputs.signing_key,
        )
        view.add_grants(g.document for g in grants)
        report.granted += len(epochs)


def _grantees(
    inputs: SyncInputs, roster: Roster, admitted: Sequence[tuple[bytes, bytes]]
) -> list[tuple[KemPublicKey, int | None]]:
    """Whom this coordinator grants to (§19.1, §20.3), each with its "only from" time: the
    active coordinators it was asked to or admitted now (not itself), then the recovery
    key of the roster, if it carries one, always every epoch."""
    targets = dict(inputs.grant_to)
    for _, device in admitted:
        targets.setdefault(device, None)  # a policy set before admission wins
    out: list[tuple[KemPublicKey, int | None]] = []
    for device, since in sorted(targets.items(), key=lambda t: t[0]):
        member = roster.member(device)
        if member is None or member.kem_key is None or member.revoked_after is not None:
            continue  # not (or no longer) an active coordinator: nothing to grant
        if device != inputs.state.device_id:
            out.append((member.kem_key, since))
    if roster.recovery is not None:
        out.append((roster.recovery.kem_key, None))
    return out


def _republish_own(inputs: SyncInputs, report: SyncReport, max_bytes: int) -> Flow[int]:
    """Re-push this coordinator's own envelopes to a server that went back in time."""
    assert inputs.view is not None and report.log is not None
    roster = report.roster
    me = inputs.state.device_id
    own = []
    for envelope_id, data in inputs.view.envelopes.items():
        header = parse_envelope(data).header
        if header.device == me:
            own.append(OutboxItem(envelope_id, data, header.seq, header.report))
    if not own:
        return 0
    state = DeviceState(org_id=inputs.state.org_id, device_id=me)
    state.outbox = sorted(own, key=lambda i: i.seq)
    summary = yield from push_flow(
        state,
        server_key=roster.roster.server_key,
        max_items=DEFAULT_BATCH_ITEMS,
        max_bytes=max_bytes,
        org_path=inputs.org_path,
        log=report.log,
    )
    yield OwnRevisionsRepublished(summary.stored)
    return summary.stored
