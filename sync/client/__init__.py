"""The client core: sans-I/O flows shared by every Sealbox client (PROTOCOL §15).

`sync_flow` runs a whole sync in the protocol's order; `drive` runs any flow over a
``send`` callable; events are typed past-tense facts; `CoordinatorView` verifies and
merges what coordinators pull.  Nothing here touches a socket, a file, the clock or
the environment: they come in as arguments.
"""

from __future__ import annotations

from sync.client.admission import (
    Admission,
    admit_flow,
    devices_flow,
    revoke_flow,
    verify_enrollment,
)
from sync.client.chain import EPOCH_LENGTH, DeviceState, OutboxItem, seal_edit
from sync.client.events import (
    AdmissionRefused,
    AttachmentFailed,
    AttachmentProgress,
    AttachmentStatesSeen,
    AttachmentsWaitForAdmission,
    AttachmentUploaded,
    BatchAcknowledged,
    BatchSplit,
    ChangesPulled,
    DeviceRevoked,
    DevicesAdmitted,
    ItemRefused,
    LogCheckpointAdopted,
    LogMisbehaviour,
    OwnRevisionsRepublished,
    RosterFresh,
    RosterReposted,
    RosterRolledBack,
    RosterStale,
    RosterVerified,
    RunBudgetSpent,
    ServerWentBackInTime,
    SplitViewSeen,
    WitnessesChecked,
)
from sync.client.flow import (
    DEFAULT_BOUNDS,
    Bounds,
    Concurrent,
    Event,
    Flow,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    decode,
    drive,
    expect,
)
from sync.client.log import LogPosition, log_flow
from sync.client.pull import PullResult, pull_flow, validate_page
from sync.client.push import PushSummary, push_flow
from sync.client.roster import (
    FreshnessSettings,
    RosterCheck,
    freshness_flow,
    repair_roster_flow,
    roster_flow,
)
from sync.client.session import SyncInputs, SyncReport, sync_flow
from sync.client.upload import (
    PendingUpload,
    attachment_states_flow,
    upload_all_flow,
    upload_flow,
)
from sync.client.view import VERIFICATION_STATES, CoordinatorView, Finding, ReportVerification

__all__ = [
    "DEFAULT_BOUNDS",
    "EPOCH_LENGTH",
    "VERIFICATION_STATES",
    "Admission",
    "AdmissionRefused",
    "AttachmentFailed",
    "AttachmentProgress",
    "AttachmentStatesSeen",
    "AttachmentUploaded",
    "AttachmentsWaitForAdmission",
    "BatchAcknowledged",
    "BatchSplit",
    "Bounds",
    "ChangesPulled",
    "Concurrent",
    "CoordinatorView",
    "DeviceRevoked",
    "DeviceState",
    "DevicesAdmitted",
    "Event",
    "Finding",
    "Flow",
    "FreshnessSettings",
    "ItemRefused",
    "LogCheckpointAdopted",
    "LogMisbehaviour",
    "LogPosition",
    "log_flow",
    "OutboxItem",
    "OwnRevisionsRepublished",
    "PendingUpload",
    "PullResult",
    "PushSummary",
    "ReportVerification",
    "Request",
    "Response",
    "RosterCheck",
    "RosterFresh",
    "RosterReposted",
    "RosterRolledBack",
    "RosterStale",
    "RosterVerified",
    "RunBudgetSpent",
    "ServerMisbehaved",
    "ServerWentBackInTime",
    "SplitViewSeen",
    "WitnessesChecked",
    "SyncInputs",
    "SyncRefused",
    "SyncReport",
    "admit_flow",
    "attachment_states_flow",
    "decode",
    "devices_flow",
    "drive",
    "expect",
    "freshness_flow",
    "pull_flow",
    "push_flow",
    "repair_roster_flow",
    "revoke_flow",
    "roster_flow",
    "seal_edit",
    "sync_flow",
    "upload_all_flow",
    "upload_flow",
    "validate_page",
    "verify_enrollment",
]
