"""The evidence bundle's bytes: what it holds and how the exporting coordinator signs it.

Theory of operation (docs/EVIDENCE.md, PROTOCOL §22):

    bundle   = canonical CBOR ["sealbox-evidence", 1, manifest, contents]
    manifest = a signed document (PROTOCOL §3), purpose "evidence", tag
               "sealbox/v1/sig/evidence", signed by an active coordinator of the newest roster
               version in the bundle, whose body names the org, the reports, each revision
               with the message key MK_{n-c} that opens it and nothing else, the newest roster
               fingerprint, the exporter's claims (time, device labels) and one tagged hash
               per section of ``contents``
    contents = canonical CBOR map of sections: "g" the roster chain from genesis, "e" the
               revisions (envelope and the content it opens to), "a" attachment plaintexts,
               "c" server checkpoints with batch inclusion proofs of the revisions, "s" the
               readable summary (HTML)

Sections are hashed with ``SHA-256("sealbox/v1/evidence-contents" || 0x00 || name || 0x00 ||
canonical CBOR of the section)``, so the signature covers every byte while a verifier can still
say which section was changed.  Building is pure: the caller passes every part, the time and
the signing key (`build_bundle`); `sync.evidence.verify` checks it with no key but the ones the
bundle's own roster chain proves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crypto import Purpose, SigningKey, encoding, sign_document

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SECTIONS",
    "Bundle",
    "LogProof",
    "RevisionPart",
    "build_bundle",
    "section_hash",
]

MAGIC = "sealbox-evidence"
FORMAT_VERSION = 1
SECTIONS = ("a", "c", "e", "g", "s")
"""Contents sections: attachments, checkpoints, envelopes (revisions), roster chain, summary."""


@dataclass(frozen=True, slots=True)
class RevisionPart:
    """One revision as disclosed: its signed envelope, its message key and its content."""

    envelope: bytes
    envelope_id: bytes
    message_key: bytes
    content: bytes


@dataclass(frozen=True, slots=True)
class LogProof:
    """A server checkpoint and a batch inclusion proof of some disclosed revisions in it."""

    checkpoint: bytes
    leaves: tuple[tuple[int, bytes], ...]  # (server seq, envelope id), ascending
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Bundle:
    """The parts of a bundle (what `build_bundle` takes and `sync.evidence.verify` parses)."""

    org_id: bytes
    reports: tuple[bytes, ...]
    rosters: tuple[bytes, ...]
    revisions: tuple[RevisionPart, ...]
    attachments: Mapping[bytes, bytes] = field(default_factory=dict)
    log: tuple[LogProof, ...] = ()
    summary: str = ""
    labels: Mapping[bytes, str] = field(default_factory=dict)

    def contents(self) -> dict[str, Any]:
        return {
            "a": [[i, self.attachments[i]] for i in sorted(self.attachments)],
            "c": [[p.checkpoint, [[s, e] for s, e in p.leaves], list(p.proof)] for p in self.log],
            "e": [[r.envelope, r.content] for r in sorted(self.revisions, key=_by_id)],
            "g": list(self.rosters),
            "s": self.summary,
        }


def _by_id(revision: RevisionPart) -> bytes:
    return revision.envelope_id


def section_hash(name: str, value: Any) -> bytes:
    """``SHA-256("sealbox/v1/evidence-contents" || 0x00 || name || 0x00 || CBOR(value))``."""
    data = Purpose.EVIDENCE_CONTENTS.value + b"\x00" + name.encode() + b"\x00"
    return hashlib.sha256(data + encoding.encode(value)).digest()


def manifest_body(
    bundle: Bundle, contents: Mapping[str, Any], *, fingerprint: bytes, exported_at: int
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "o": bundle.org_id,
        "t": exported_at,
        "r": sorted(set(bundle.reports)),
        "k": [[r.envelope_id, r.message_key] for r in sorted(bundle.revisions, key=_by_id)],
        "f": fingerprint,
        "l": [[d, bundle.labels[d]] for d in sorted(bundle.labels)],
        "h": {name: section_hash(name, contents[name]) for name in SECTIONS},
    }


def build_bundle(
    bundle: Bundle, *, fingerprint: bytes, exported_at: int, exporter: SigningKey
) -> bytes:
    """The bundle's bytes: ``contents`` and the manifest signed by ``exporter`` at
    ``exported_at`` (its clock: a claim).  ``fingerprint`` is the newest roster version's."""
    contents = bundle.contents()
    body = manifest_body(bundle, contents, fingerprint=fingerprint, exported_at=exported_at)
    manifest = sign_document(Purpose.EVIDENCE_SIGNATURE, body, exporter)
    return encoding.encode([MAGIC, FORMAT_VERSION, manifest.to_bytes(), encoding.encode(contents)])


def revisions_of(parts: Sequence[RevisionPart]) -> dict[bytes, RevisionPart]:
    return {p.envelope_id: p for p in parts}
