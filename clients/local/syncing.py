"""One sync of a profile: drive `sync.client.sync_flow`, persist what its events name.

Shared by `sealbox sync` and Sealbox Desk. The protocol rules live in `sync/client/`;
this module only maps the profile's records to `SyncInputs` and persists each event's
facts in the local store. Progress goes to a `rich.progress.Progress`-shaped sink
(`add_task`, `update`): the CLI's bar, or a disabled one whose tasks the Desk reads.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from rich.progress import Progress

from clients.local import carried, freshness, grants
from clients.local.evidence_log import forget_leaves, keep_checkpoint, keep_leaves
from clients.local.invites import admission_inputs
from clients.local.profile import Profile
from clients.local.rotation import finish_field_rotation
from clients.local.transport import Transport

# The upload queue lives with the CLI's attachment code for now (a later step moves it here).
from clients.reference_cli.attachments import UploadEvents, pending_uploads, read_sealed_chunk
from crypto import encoding
from sync.client import (
    AdmissionRefused,
    AttachmentsWaitForAdmission,
    BatchAcknowledged,
    Bounds,
    CarriedSeenInFeed,
    ChangesPulled,
    DeviceRevoked,
    DevicesAdmitted,
    Event,
    GrantsPosted,
    GrantsPulled,
    ItemRefused,
    LogCheckpointAdopted,
    LogMisbehaviour,
    OwnRevisionsRepublished,
    RelayDelivered,
    RosterFresh,
    RosterKnownAt,
    RosterReposted,
    RosterRolledBack,
    RosterStale,
    RosterVerified,
    RunBudgetSpent,
    ServerWentBackInTime,
    SplitViewSeen,
    StaleRosterSeen,
    SyncInputs,
    WitnessesChecked,
    drive,
    sync_flow,
)
from sync.grant import peek_grant
from sync.invite import Enrollment
from sync.roster import Role

__all__ = ["Persist", "run_sync"]

_LOG_FINDINGS = {
    "log-rolled-back": "the server's log is smaller than a checkpoint it signed before"
    " (restored from a backup, or history removed)",
    "log-forked": "the server signed two different logs of the same size (a split view)",
    "log-inconsistent": "the server's log does not extend a checkpoint it signed before"
    " (history rewritten)",
}

_WITNESSES_KEPT = 10_000
"""Checked witnesses remembered (one per device sync); older ones may be checked again."""


class Persist:
    """Persists what each event names, in the local store, and notes it for the summary."""

    def __init__(self, profile: Profile, summary: dict[str, Any], progress: Progress) -> None:
        self.profile = profile
        self.summary = summary
        self.progress = progress
        self.state = profile.device_state()
        self.total = len(self.state.outbox)
        self.task = progress.add_task("Sending", total=self.total, visible=self.total > 0)
        self.uploads = UploadEvents(profile, progress)
        self.warnings: list[str] = summary.setdefault("warnings", [])

    def warn(self, text: str) -> None:
        self.profile.warn(text)
        self.warnings.append(text)

    def __call__(self, event: Event) -> None:
        p = self.profile
        if isinstance(event, RosterVerified):
            with p.store.transaction():
                for version in event.fresh:
                    p.set_roster(version)
                p.meta["roster_checked"] = int(time.time())
                p.save_meta()
        elif isinstance(event, RosterRolledBack):
            self.summary["roster_rollback"] = event.served
            self.warn(
                f"roster: the server serves roster version {event.served}, older than the"
                f" verified version {event.trusted} (restored from a backup, or lying);"
                " the verified roster is kept"
            )
        elif isinstance(event, RosterFresh):
            p.meta[freshness.HELD_KEY] = event.document
            p.save_meta()
            self.summary["roster_fresh_at"] = event.issued_at
        elif isinstance(event, RosterStale):  # said at every sync, not kept: `status` re-checks
            self.summary["roster_stale"] = True
            self.warnings.append(freshness.stale_text(event.last_fresh_at, event.horizon))
        elif isinstance(event, RosterReposted):
            self.summary["roster_reposted"] = event.count
        elif isinstance(event, DeviceRevoked):
            self.summary["revoked"] = True
        elif isinstance(event, (BatchAcknowledged, ItemRefused)):
            p.save_device(self.state)
            self.progress.update(self.task, completed=self.total - len(self.state.outbox))
        elif isinstance(event, DevicesAdmitted):
            self._admitted(event)
        elif isinstance(event, AdmissionRefused):
            self.warn(f"admission refused: {event.reason}")
        elif isinstance(event, ServerWentBackInTime):
            self.summary["server_went_back"] = True
            forget_leaves(p.store)  # pulled again from the start: the old order is not the log
            self.warn("the server went back in time (restored?): re-pulled from the start")
        elif isinstance(event, ChangesPulled):
            with p.store.transaction():
                p.keep_envelopes(event.envelopes)
                keep_leaves(p.store, event.last_seq - len(event.leaves), event.leaves)
                grants.note_first_seen(p, event.envelopes, int(time.time()))
                p.meta["cursor"] = event.cursor
                p.meta["log_frontier"] = event.log_frontier
                p.save_meta()
            self.summary["pulled"] = self.summary.get("pulled", 0) + len(event.envelopes)
        elif isinstance(event, GrantsPulled):
            with p.store.transaction():
                grants.keep_grants(p, event.documents)
                p.meta["grants_after"] = event.after
                p.save_meta()
        elif isinstance(event, GrantsPosted):
            grants.keep_grants(p, event.documents)
            self.summary["granted"] = self.summary.get("granted", 0) + sum(
                len(peek_grant(d).entries) for d in event.documents
            )
        elif isinstance(event, LogCheckpointAdopted):
            with p.store.transaction():  # the device's witness follows it (§17.8)
                if p.role is Role.COORDINATOR:  # for evidence bundles (PROTOCOL §22.5)
                    keep_checkpoint(p.store, event.checkpoint)
                p.meta["log_checkpoint"] = event.checkpoint
                p.save_meta()
                p.save_device(self.state)
        elif isinstance(event, LogMisbehaviour):
            self._log_misbehaviour(event)
        elif isinstance(event, SplitViewSeen):
            self._split_view(event)
        elif isinstance(event, RosterKnownAt):
            known = dict(p.meta.get("roster_known_at", {}))
            known.update((str(v), n) for v, n in event.sizes)
            p.meta["roster_known_at"] = known
            p.save_meta()
        elif isinstance(event, StaleRosterSeen):
            self._stale_roster(event)
        elif isinstance(event, WitnessesChecked):
            done = [*p.meta.get("witnesses_checked", []), *event.keys]
            p.meta["witnesses_checked"] = done[-_WITNESSES_KEPT:]
            p.save_meta()
        elif isinstance(event, OwnRevisionsRepublished):
            self.summary["republished"] = event.count
        elif isinstance(event, RunBudgetSpent):
            self.warn(f"sync stopped early: {event.reason}; run it again to go on")
        elif isinstance(event, AttachmentsWaitForAdmission):
            self.summary["attachments_waiting"] = event.count
        elif isinstance(event, RelayDelivered):  # §23.3
            carried.relay_delivered(p.store, event)
            self.summary["relayed"] = self.summary.get("relayed", 0) + len(event.delivered)
            if event.refused:
                self.summary["relay_refused"] = len(event.refused)
                self.warn(
                    f"the server refused {len(event.refused)} relayed envelope(s) of other"
                    " devices (see `sealbox relay list`)"
                )
        elif isinstance(event, CarriedSeenInFeed):  # §23.4
            carried.seen_in_feed(p.store, event)
        else:
            self.uploads(event, self.summary)

    def _log_misbehaviour(self, event: LogMisbehaviour) -> None:
        """Keep both signed checkpoints as evidence and say it on every read (§17.6)."""
        name = hashlib.sha256(event.held + event.offered).hexdigest()[:32]
        self.profile.store.put_cbor(
            "logfinding",
            name,
            {
                "kind": event.kind,
                "held": event.held,
                "offered": event.offered,
                "where": event.where,
                "at": int(time.time()),
            },
        )
        self.summary.setdefault("log_findings", []).append(event.kind)
        self.warn(
            f"{event.kind}: {_LOG_FINDINGS[event.kind]};"
            " both signed checkpoints are kept as evidence"
        )

    def _split_view(self, event: SplitViewSeen) -> None:
        """Keep the revision's id and the checkpoint it contradicts as evidence (§17.8)."""
        name = hashlib.sha256(event.envelope_id + event.checkpoint).hexdigest()[:32]
        self.profile.store.put_cbor(
            "logfinding",
            name,
            {
                "kind": "split-view",
                "held": event.checkpoint,
                "envelope": event.envelope_id,
                "device": event.device,
                "witnessed_size": event.witnessed_size,
                "witnessed_root": event.witnessed_root,
                "where": "witness",
                "at": int(time.time()),
            },
        )
        self.summary.setdefault("log_findings", []).append("split-view")
        self.warn(
            f"split-view: device {event.device.hex()} signed a revision after seeing a log of"
            f" {event.witnessed_size} entries that is not part of the log the server shows you"
            f" ({event.why}); the revision and the server's checkpoint are kept as evidence"
        )

    def _stale_roster(self, event: StaleRosterSeen) -> None:
        """Keep each envelope sealed to a superseded roster; warn once per device and version."""
        self.profile.store.put_cbor(
            "logfinding",
            event.envelope_id.hex()[:32],
            {
                "kind": "stale-roster",
                "envelope": event.envelope_id,
                "device": event.device,
                "sealed_to": event.sealed_to,
                "superseded_by": event.superseded_by,
                "server_seq": event.server_seq,
                "where": "feed",
                "at": int(time.time()),
            },
        )
        findings = self.summary.setdefault("log_findings", [])
        if "stale-roster" not in findings:
            findings.append("stale-roster")
        self.warn(
            f"stale-roster: device {event.device.hex()} sealed to roster version"
            f" {event.sealed_to} after you knew version {event.superseded_by} removed a"
            " coordinator: that content is readable by the removed coordinator, and the device"
            " was behind on the roster (offline, or the roster withheld from it)"
        )

    def _admitted(self, event: DevicesAdmitted) -> None:
        p = self.profile
        invites = {bytes.fromhex(n): encoding.decode(raw) for n, raw in p.store.items("invite")}
        documents = {}
        for document in event.enrollments:
            enrollment, _ = Enrollment.parse_and_verify(document)
            documents[enrollment.device_id] = (enrollment, document)
        with p.store.transaction():
            p.set_roster(event.roster)
            p.save_enrollments(
                [e for e, _ in documents.values()], {d: doc for d, (_, doc) in documents.items()}
            )
            for invite_id, device_id in event.admitted:
                # An invite admits at most one device (PROTOCOL §6.5).
                record = dict(invites[invite_id], admitted=device_id)
                p.store.put_cbor("invite", invite_id.hex(), record)
                member = event.roster.roster.member(device_id)
                if member is not None and member.role is Role.COORDINATOR:
                    # Grant it the history this coordinator holds, now and at every sync
                    # (PROTOCOL §19.1), unless a policy was set for it before.
                    policies = grants.grant_policies(p)
                    grants.set_policy(p, device_id, policies.get(device_id))
        self.summary["admitted"] = [device.hex() for _, device in event.admitted]


def run_sync(
    profile: Profile,
    transport: Transport,
    batch_size: int | None,
    time_budget: float,
    summary: dict[str, Any],
    progress: Progress,
) -> None:
    """One sync of ``profile`` over ``transport``: persist every event, fill ``summary``.

    ``progress`` is told the outbox and upload totals and how far they went (the CLI's
    bar on stderr; Sealbox Desk keeps it to show on the sync page).
    """
    coordinator = profile.role is Role.COORDINATOR
    invites = {bytes.fromhex(n): encoding.decode(raw) for n, raw in profile.store.items("invite")}
    invite_secrets, cancelled, acknowledged = admission_inputs(invites)  # PROTOCOL §6.7
    persist = Persist(profile, summary, progress)
    view = profile.view() if coordinator else None
    inputs = SyncInputs(
        org_path=profile.org_path,
        role=profile.role,
        signing_key=profile.signing_key,
        trusted=profile.roster,
        roster_chain=profile.roster_chain(),
        state=persist.state,
        clock=time.monotonic,
        view=view,
        cursor=profile.meta.get("cursor") if coordinator else None,
        log_checkpoint=profile.meta.get("log_checkpoint"),
        log_frontier=bytes(profile.meta.get("log_frontier", b"")) if coordinator else b"",
        freshness=freshness.settings(profile),
        witnesses_checked=frozenset(profile.meta.get("witnesses_checked", [])),
        roster_known_at={int(v): n for v, n in profile.meta.get("roster_known_at", {}).items()},
        invite_secrets=invite_secrets,
        cancelled_invites=cancelled,
        cancel_acknowledged=acknowledged,
        grants_after=int(profile.meta.get("grants_after", 0)) if coordinator else 0,
        grant_to=grants.grant_policies(profile) if coordinator else {},
        first_seen=grants.first_seen(profile) if coordinator else {},
        wall_clock=lambda: int(time.time()),
        uploads=pending_uploads(profile.store),
        read_chunk=lambda pending, index: read_sealed_chunk(profile, pending, index),
        bounds=Bounds(run_seconds=time_budget),
        batch_size=batch_size,
        relay=carried.relay_queue(profile.store),
        carried=carried.carried_waiting(profile.store) if coordinator else frozenset(),
    )
    report = drive(sync_flow(inputs), transport.send, persist, send_many=transport.send_many)
    push = report.push
    summary.update(
        stored=push.stored,
        purged=push.purged,
        rejected=push.rejected,
        outbox=len(persist.state.outbox),
        splits=push.splits,
        relay_queued=profile.store.count("relay"),
    )
    if view is not None and not report.revoked:
        reports = view.reports()
        summary.update(
            pulled=summary.get("pulled", 0),
            reports=len(reports),
            conflicts=sum(1 for s in reports.values() if s.conflicts),
            findings=[f.text() for f in view.findings()],
            roster_version=report.roster.roster.version,
        )
    if report.revoked and profile.role is Role.FIELD:
        rotated = finish_field_rotation(profile)  # PROTOCOL §19.7: revoked by its rotation
        if rotated is not None:
            summary.update(revoked=False, rotated_to=rotated.hex())
    summary.setdefault("attachments_uploaded", 0)
    summary["attachments_pending"] = len(pending_uploads(profile.store))
    profile.meta["last_sync"] = int(time.time())
    profile.save_meta()
