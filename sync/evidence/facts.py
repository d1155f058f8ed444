"""What a verified evidence bundle establishes (`VerifiedBundle`), and the one refusal.

`sync.evidence.verify.verify_bundle` fills these only from checks that passed; what is merely
claimed (device clocks, the exporter's clock and labels) is kept in fields named as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sync.checkpoint import Checkpoint
from sync.merge import ReportState
from sync.report import AttachmentManifest, ReportContent

__all__ = [
    "AttachmentFact",
    "EvidenceRefused",
    "Logged",
    "MemberFact",
    "RevisionFact",
    "VerifiedBundle",
    "short",
]


class EvidenceRefused(Exception):
    """The bundle does not verify; the message says which check failed, and where."""


def short(value: bytes) -> str:
    """An id as the verifier names it in messages: its first 16 hex digits."""
    return value.hex()[:16]


@dataclass(frozen=True, slots=True)
class Logged:
    """A server-signed checkpoint whose tree holds a revision at ``server_seq``."""

    server_seq: int
    size: int
    issued_at: int  # the server's clock (signed by the server: its claim of the time)
    code: str  # the checkpoint's short code (PROTOCOL §17.4)


@dataclass(frozen=True, slots=True)
class RevisionFact:
    id: bytes
    report: bytes
    device: bytes
    role: str
    seq: int
    key_seq: int
    roster_version: int
    parents: tuple[bytes, ...]
    witness_size: int
    content: ReportContent
    logged: Logged | None  # the earliest checkpoint in the bundle that holds it


@dataclass(frozen=True, slots=True)
class MemberFact:
    device_id: bytes
    role: str
    listed_from: int  # the first roster version that lists the device
    revoked_after: int | None
    label: str | None  # the exporter's claim


@dataclass(frozen=True, slots=True)
class AttachmentFact:
    manifest: AttachmentManifest
    included: bool  # the plaintext is in the bundle and matches the signed size and hash


@dataclass
class VerifiedBundle:
    org_id: bytes
    reports: tuple[bytes, ...]
    genesis_fingerprint: bytes
    fingerprint: bytes
    roster_version: int
    server_key_id: bytes
    exporter: bytes
    exported_at: int  # the exporter's clock: a claim
    revisions: dict[bytes, RevisionFact]
    members: dict[bytes, MemberFact]
    attachments: dict[bytes, AttachmentFact]
    checkpoints: list[Checkpoint]
    summary: str
    states: dict[bytes, ReportState] = field(default_factory=dict)
    message_keys: dict[bytes, bytes] = field(default_factory=dict)

    def history(self, report: bytes) -> list[RevisionFact]:
        """The report's revisions in log order where logged (proven), then by device clock."""
        revisions = [r for r in self.revisions.values() if r.report == report]
        return sorted(
            revisions,
            key=lambda r: (
                r.logged is None,
                r.logged.server_seq if r.logged else 0,
                r.content.client_time,
                r.id,
            ),
        )
