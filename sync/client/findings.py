"""What the coordinator's view reports besides content: findings and verification states."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KCM", "KCM_KIND", "VERIFICATION_STATES", "Finding", "ReportVerification"]

KCM_KIND = "key-commitment-mismatch"
KCM = (
    "its author gave coordinators different keys (the key this coordinator unwrapped is not "
    "the one the signed header commits to); nothing sealed under it is shown"
)

VERIFICATION_STATES = ("verified", "pending-admission", "after-revocation", "with-findings")
"""A report's verification state, worst last but one: content from a device not yet
admitted outranks the rest, since it may come from a key the server enrolled itself."""


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """Something a coordinator must see: a gap, a fork, a revoked signer, a forgery."""

    kind: str
    device: bytes
    seq: int
    detail: str

    def text(self) -> str:
        return f"{self.kind}: device {self.device.hex()[:12]} seq {self.seq}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ReportVerification:
    """How far a report's content can be trusted, and why."""

    state: str
    reasons: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return self.state == "verified"
