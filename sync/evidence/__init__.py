"""Verifiable evidence bundles (PROTOCOL §22, docs/EVIDENCE.md): the format and the offline
verifier, with no I/O.  `build_bundle` signs a bundle from its parts; `verify_bundle` checks
one with nothing but the keys its own roster chain proves; `proven` and `claimed` say what
a verified bundle establishes and what it only states."""

from __future__ import annotations

from sync.evidence.bundle import (
    FORMAT_VERSION,
    MAGIC,
    Bundle,
    LogProof,
    RevisionPart,
    build_bundle,
    section_hash,
)
from sync.evidence.facts import (
    EvidenceRefused,
    Logged,
    MemberFact,
    RevisionFact,
    VerifiedBundle,
)
from sync.evidence.log import prove_in_log
from sync.evidence.statements import claimed, proven
from sync.evidence.verify import verify_bundle

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Bundle",
    "EvidenceRefused",
    "LogProof",
    "Logged",
    "MemberFact",
    "RevisionFact",
    "RevisionPart",
    "VerifiedBundle",
    "build_bundle",
    "claimed",
    "proven",
    "prove_in_log",
    "section_hash",
    "verify_bundle",
]
