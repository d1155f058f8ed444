"""Typed, past-tense facts the client flows report (PROTOCOL §15).

Each event names what the driver must persist before it renders it; frontends only
render events, they never decide protocol questions themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.attachments import UploadStatus
from sync.client.flow import Event
from sync.roster import SignedRoster

__all__ = [
    "AdmissionRefused",
    "AttachmentFailed",
    "AttachmentProgress",
    "AttachmentStatesSeen",
    "AttachmentUploaded",
    "AttachmentsWaitForAdmission",
    "BatchAcknowledged",
    "BatchSplit",
    "ChangesPulled",
    "DeviceRevoked",
    "DevicesAdmitted",
    "GrantsPosted",
    "GrantsPulled",
    "ItemRefused",
    "LogCheckpointAdopted",
    "LogMisbehaviour",
    "OwnRevisionsRepublished",
    "CarriedSeenInFeed",
    "RelayDelivered",
    "RosterFresh",
    "RosterReposted",
    "RosterRolledBack",
    "RosterStale",
    "RosterVerified",
    "RunBudgetSpent",
    "ServerWentBackInTime",
    "RosterKnownAt",
    "SplitViewSeen",
    "StaleRosterSeen",
    "WitnessesChecked",
]


@dataclass(frozen=True, slots=True)
class RosterVerified(Event):
    """The served roster chain verified from the trusted version; persist ``fresh``."""

    newest: SignedRoster
    fresh: tuple[SignedRoster, ...]


@dataclass(frozen=True, slots=True)
class RosterRolledBack(Event):
    """The server serves an older roster than this client verified; the trusted one stays."""

    served: int
    trusted: int


@dataclass(frozen=True, slots=True)
class RosterFresh(Event):
    """A fresh roster freshness statement verified for the trusted version (PROTOCOL §18.3),
    or this coordinator's own was accepted: persist ``document`` as the held statement."""

    version: int
    issued_at: int
    document: bytes


@dataclass(frozen=True, slots=True)
class RosterStale(Event):
    """No fresh statement for the trusted roster within ``horizon`` seconds: a newer roster may
    be withheld from this device (or it was offline). Say so; sealing and syncing go on.
    ``last_fresh_at`` is the newest statement's ``t`` this client verified, if any."""

    last_fresh_at: int | None
    horizon: int


@dataclass(frozen=True, slots=True)
class RosterReposted(Event):
    """A coordinator re-posted ``count`` verified versions a restored server had lost."""

    count: int


@dataclass(frozen=True, slots=True)
class DeviceRevoked(Event):
    """This device is revoked in a verified roster: the sync stopped, the queue is kept."""

    revoked_after: int


@dataclass(frozen=True, slots=True)
class BatchAcknowledged(Event):
    """A push batch was answered and applied to the device state; persist the state."""

    stored: int
    purged: int
    retry_later: int


@dataclass(frozen=True, slots=True)
class BatchSplit(Event):
    """The server found a batch too large; the next one holds at most ``size`` items."""

    size: int


@dataclass(frozen=True, slots=True)
class ItemRefused(Event):
    """The server refused one envelope for good; it is kept aside (persist the state)."""

    seq: int
    status: str
    detail: str


@dataclass(frozen=True, slots=True)
class DevicesAdmitted(Event):
    """Admission ran: persist the roster, the enrollments and the used invites."""

    roster: SignedRoster
    admitted: tuple[tuple[bytes, bytes], ...]  # (invite id, device id)
    enrollments: tuple[bytes, ...]  # enrollment documents that vouch for pending devices


@dataclass(frozen=True, slots=True)
class AdmissionRefused(Event):
    """An invite's enrollments could not be admitted (several claims, or no proof)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ServerWentBackInTime(Event):
    """The feed cursor is from another epoch or ahead: the server was restored or replaced."""


@dataclass(frozen=True, slots=True)
class ChangesPulled(Event):
    """A fully validated feed page: persist ``envelopes``, ``cursor`` and ``log_frontier``
    (the pulled tree's right edge at ``last_seq``, PROTOCOL §17.6) together."""

    envelopes: tuple[bytes, ...]
    cursor: str
    last_seq: int
    more: bool
    log_frontier: bytes = b""
    # Every item's envelope id, in server order (the log's leaves after_seq+1..last_seq):
    # kept so that an evidence bundle can prove a revision's place in a checkpoint (§22).
    leaves: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class OwnRevisionsRepublished(Event):
    """A coordinator re-pushed ``count`` of its own envelopes to a restored server."""

    count: int


@dataclass(frozen=True, slots=True)
class RunBudgetSpent(Event):
    """The run hit its page or time budget; the next run resumes from verified progress."""

    reason: str


@dataclass(frozen=True, slots=True)
class AttachmentProgress(Event):
    attachment_id: bytes
    done_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class AttachmentUploaded(Event):
    """The server holds the whole attachment: forget the upload record (and sealed copy)."""

    attachment_id: bytes


@dataclass(frozen=True, slots=True)
class AttachmentFailed(Event):
    """One upload failed; it stays queued for the next sync."""

    attachment_id: bytes
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class AttachmentsWaitForAdmission(Event):
    """Uploads wait until a coordinator admits this device (nothing is wrong)."""

    count: int


@dataclass(frozen=True, slots=True)
class AttachmentStatesSeen(Event):
    """Coordinators: the server's upload states, one page (persist them for `reports show`)."""

    uploads: tuple[UploadStatus, ...]


@dataclass(frozen=True, slots=True)
class LogCheckpointAdopted(Event):
    """A newer checkpoint of the organisation's log verified; persist it as the held one."""

    checkpoint: bytes


@dataclass(frozen=True, slots=True)
class LogMisbehaviour(Event):
    """The server's log does not extend the held checkpoint (PROTOCOL §17.6): ``kind`` is
    ``log-rolled-back``, ``log-forked`` or ``log-inconsistent``; ``held`` and ``offered``
    are both signed checkpoints, the evidence.  Persist it and show it on every read."""

    kind: str
    held: bytes
    offered: bytes
    where: str


@dataclass(frozen=True, slots=True)
class SplitViewSeen(Event):
    """A revision's witness (the log its device saw, §17.8) is not a prefix of the log this
    coordinator is shown: ``checkpoint`` is the server-signed one it contradicts.  Persist
    it with the revision's id as evidence and show it on every read."""

    device: bytes
    envelope_id: bytes
    witnessed_size: int
    witnessed_root: bytes
    checkpoint: bytes
    why: str


@dataclass(frozen=True, slots=True)
class WitnessesChecked(Event):
    """These witnesses (header ``w`` values) were checked; persist them so none is asked twice."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RosterKnownAt(Event):
    """Roster versions first held in this sync, with the log size then (§18.4): persist."""

    sizes: tuple[tuple[int, int], ...]  # (roster version, log size)


@dataclass(frozen=True, slots=True)
class StaleRosterSeen(Event):
    """An envelope stored after this coordinator knew roster ``superseded_by`` removed a
    coordinator it was sealed to (``sealed_to``): ``stale-roster`` (§18.4).  Persist it."""

    envelope_id: bytes
    device: bytes
    sealed_to: int
    superseded_by: int
    server_seq: int


@dataclass(frozen=True, slots=True)
class RelayDelivered(Event):
    """Carried envelopes of other devices were relayed (PROTOCOL §23.3): drop ``delivered``
    (a verified receipt lists them) and ``refused`` (terminal: keep the reasons to show)
    from the relay queue; keep the ``receipts``."""

    delivered: tuple[bytes, ...]
    refused: tuple[tuple[bytes, str, str], ...]
    receipts: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CarriedSeenInFeed(Event):
    """Envelopes a coordinator imported from a carried file arrived in the feed (§23.4):
    they now have their place in the log; forget that they were waiting for it."""

    envelope_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class GrantsPulled(Event):
    """A validated page of the organisation's grants (PROTOCOL §19): persist ``documents``
    (verified when taken into the view) and the grant list position ``after``."""

    documents: tuple[bytes, ...]
    after: int


@dataclass(frozen=True, slots=True)
class GrantsPosted(Event):
    """This coordinator granted epochs to the HPKE key ``grantee``: keep ``documents``."""

    documents: tuple[bytes, ...]
    grantee: bytes
