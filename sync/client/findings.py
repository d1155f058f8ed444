"""What the coordinator's view reports besides content: findings and verification states."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

__all__ = [
    "KCM",
    "KCM_KIND",
    "VERIFICATION_STATES",
    "Finding",
    "ReportVerification",
    "chain_findings",
]

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


def chain_findings(
    chains: Mapping[bytes, Mapping[int, set[bytes]]],
    prev: Mapping[bytes, bytes],
    *,
    is_member: Callable[[bytes], bool],
    enrolled: Container[bytes],
) -> set[Finding]:
    """What the device chains held show (PROTOCOL §4.5 item 4, §6.6): a seq missing below
    the highest, two envelopes at one seq or a ``prev`` that does not link, and content from
    an enrolled device that no roster version admits yet."""
    found: set[Finding] = set()
    for device, chain in chains.items():
        for seq in range(1, max(chain)):
            if seq not in chain:
                found.add(Finding("gap", device, seq, "missing from the device's chain"))
        for seq, ids in chain.items():
            if len(ids) > 1:
                found.add(Finding("fork", device, seq, f"{len(ids)} different envelopes"))
            for envelope_id in ids:
                if seq > 1 and seq - 1 in chain and prev[envelope_id] not in chain[seq - 1]:
                    found.add(Finding("fork", device, seq, "prev does not match the chain"))
        if not is_member(device) and device in enrolled:
            # Readable, but only flagged, until a roster version lists it.
            found.add(
                Finding(
                    "pending-admission",
                    device,
                    max(chain),
                    "content from a device not yet admitted into the roster",
                )
            )
    return found
