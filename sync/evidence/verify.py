"""Verify an evidence bundle offline: no server, no organisation key (docs/EVIDENCE.md §4).

Every check runs against keys the bundle itself proves: the roster chain from its genesis
(PROTOCOL §5.2) gives the devices' signing keys, the coordinators and the server key (``sv``);
nothing else is trusted.  The first check that fails ends verification with `EvidenceRefused`,
whose message says what failed and where (a revision, a roster version, a section), so that a
changed byte, a removed revision or one added from another report is named, not just refused.

What passes is returned as a `VerifiedBundle`: the facts proven, and, kept apart, what the
bundle only claims (device clocks, the exporter's clock and labels, and that each disclosed
message key is the one the author's committed chain key derives, THREAT_MODEL §7.11).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from crypto import (
    MalformedEnvelope,
    MessageKey,
    Purpose,
    SignedDocument,
    VerificationFailed,
    encoding,
    open_revision,
    parse_envelope,
)
from sync.evidence.bundle import FORMAT_VERSION, MAGIC, SECTIONS, section_hash
from sync.evidence.facts import (
    AttachmentFact,
    EvidenceRefused,
    Logged,
    MemberFact,
    RevisionFact,
    VerifiedBundle,
    short,
)
from sync.evidence.log import check_log
from sync.merge import MergeError, ReportDag, Revision
from sync.report import AttachmentManifest, ContentError, ReportContent
from sync.roster import Member, RosterError, SignedRoster, verify_chain

__all__ = [
    "EvidenceRefused",
    "Logged",
    "MemberFact",
    "RevisionFact",
    "VerifiedBundle",
    "verify_bundle",
]

SECTION_NAMES = {
    "a": "attachments",
    "c": "checkpoints",
    "e": "revisions",
    "g": "roster chain",
    "s": "summary",
}
_MANIFEST_KEYS = {"v", "o", "t", "r", "k", "f", "l", "h"}


def _refuse(message: str) -> EvidenceRefused:
    return EvidenceRefused(message)


def _outer(data: bytes) -> tuple[SignedDocument, Any, Any]:
    try:
        outer = encoding.decode(data)
    except (encoding.CanonicalError, TypeError):
        raise _refuse(
            "the file is not canonical CBOR: not an evidence bundle, or damaged"
        ) from None
    if not (isinstance(outer, list) and len(outer) == 4 and outer[0] == MAGIC):
        raise _refuse("the file is not a Sealbox evidence bundle")
    if type(outer[1]) is not int or outer[1] != FORMAT_VERSION:
        raise _refuse(f"unsupported evidence bundle format {outer[1]!r} (this verifier reads 1)")
    if not isinstance(outer[2], bytes) or not isinstance(outer[3], bytes):
        raise _refuse("the bundle's manifest and contents must be byte strings")
    try:
        manifest = SignedDocument.parse(outer[2], Purpose.EVIDENCE_SIGNATURE)
        body = manifest.unverified_body()
    except VerificationFailed:
        raise _refuse("the manifest is not a signed evidence document (PROTOCOL §3)") from None
    try:
        contents = encoding.decode(outer[3])
    except encoding.CanonicalError:
        raise _refuse("the contents are not canonical CBOR") from None
    if not isinstance(contents, dict) or set(contents) != set(SECTIONS):
        raise _refuse(f"the contents must have exactly the sections {', '.join(SECTIONS)}")
    if not isinstance(body, dict) or set(body) != _MANIFEST_KEYS or body["v"] != FORMAT_VERSION:
        raise _refuse("the manifest body has missing or unknown fields")
    return manifest, body, contents


def _pairs(value: Any, what: str, first: int, second: type) -> list[tuple[bytes, Any]]:
    if not isinstance(value, list):
        raise _refuse(f"{what} must be a list")
    out = []
    for item in value:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], bytes)
            and len(item[0]) == first
            and isinstance(item[1], second)
        ):
            raise _refuse(f"{what}: malformed entry")
        out.append((item[0], item[1]))
    keys = [k for k, _ in out]
    if keys != sorted(set(keys)):
        raise _refuse(f"{what} must be sorted by id, each once")
    return out


def _rosters(contents: Mapping[str, Any], body: Mapping[str, Any]) -> list[SignedRoster]:
    raw = contents["g"]
    if not isinstance(raw, list) or not raw or not all(isinstance(r, bytes) for r in raw):
        raise _refuse("the roster chain must be a non-empty list of signed roster versions")
    chain = []
    for i, data in enumerate(raw):
        try:
            chain.append(SignedRoster.parse(data))
        except RosterError:
            raise _refuse(f"roster entry {i + 1} is not a signed roster version") from None
    try:
        verify_chain(chain)
    except RosterError as exc:
        at = next((v.roster.version for v in chain), "?")
        raise _refuse(f"the roster chain does not verify from version {at}: {exc}") from None
    newest = chain[-1]
    if newest.roster.org_id != body["o"]:
        raise _refuse("the roster chain is another organisation's than the manifest names")
    if newest.hash != body["f"]:
        raise _refuse("the newest roster version is not the one the signed manifest names")
    return chain


def _members(chain: list[SignedRoster], labels: Mapping[bytes, str]) -> dict[bytes, MemberFact]:
    first: dict[bytes, int] = {}
    for version in chain:
        for m in version.roster.members:
            first.setdefault(m.device_id, version.roster.version)
    newest = chain[-1].roster
    out = {}
    for m in newest.members:
        label = labels.get(m.device_id)
        out[m.device_id] = MemberFact(
            m.device_id, str(m.role), first[m.device_id], m.revoked_after, label
        )
    for device in labels:
        if device not in out:
            raise _refuse(f"the manifest labels device {short(device)}, not a roster member")
    return out


def _revision(
    envelope_bytes: bytes,
    content_bytes: bytes,
    keys: Mapping[bytes, bytes],
    reports: set[bytes],
    chain: list[SignedRoster],
    org: bytes,
) -> tuple[Any, ReportContent, Member]:
    try:
        envelope = parse_envelope(envelope_bytes)
    except MalformedEnvelope as exc:
        raise _refuse(f"a revision is not a well-formed envelope: {exc.reason}") from None
    rid, header = envelope.id, envelope.header
    name = f"revision {short(rid)}"
    if rid not in keys:
        what = "altered, added, or from another bundle"
        if header.report is not None and header.report not in reports:
            what = f"it belongs to report {short(header.report)}, not one of this bundle's"
        raise _refuse(f"the bundle holds {name}, which the signed manifest does not list ({what})")
    if header.kind != "rev" or header.report is None or header.key_seq is None:
        raise _refuse(f"{name} is a key envelope, not a revision")
    if header.org != org:
        raise _refuse(f"{name} is of another organisation")
    if header.report not in reports:
        raise _refuse(f"{name} belongs to report {short(header.report)}, not one of the bundle's")
    newest = chain[-1].roster
    member = newest.member(header.device)
    if member is None:
        raise _refuse(
            f"{name} is signed by device {short(header.device)}, not a member of roster"
            f" version {newest.version}"
        )
    try:
        envelope.verify_signature(member.signing_key)
    except VerificationFailed:
        raise _refuse(
            f"{name}: device {short(header.device)}'s signature does not verify"
        ) from None
    if not member.accepts_seq(header.seq):
        raise _refuse(
            f"{name} was signed at device seq {header.seq}, after device"
            f" {short(header.device)}'s revocation point {member.revoked_after}"
        )
    if header.roster_version > newest.version:
        raise _refuse(f"{name} names roster version {header.roster_version}, not in the bundle")
    try:
        opened = open_revision(
            envelope, author=member.signing_key, message_key=MessageKey(keys[rid])
        )
    except VerificationFailed:
        raise _refuse(
            f"{name} does not open under its disclosed message key with its signed header as"
            " associated data"
        ) from None
    if opened != content_bytes:
        raise _refuse(f"the content given for {name} is not what its body opens to")
    try:
        content = ReportContent.decode(opened)
    except ContentError as exc:
        raise _refuse(f"{name} opens to content that is not report content: {exc}") from None
    return envelope, content, member


def verify_bundle(data: bytes) -> VerifiedBundle:
    """Check every part of ``data`` (docs/EVIDENCE.md §4). Raises `EvidenceRefused`."""
    manifest, body, contents = _outer(data)
    org = body["o"]
    if not isinstance(org, bytes) or len(org) != 16 or type(body["t"]) is not int:
        raise _refuse("the manifest's organisation id or time is malformed")
    reports = body["r"]
    if not (
        isinstance(reports, list)
        and reports
        and all(isinstance(r, bytes) and len(r) == 16 for r in reports)
    ):
        raise _refuse("the manifest must name at least one report")
    if reports != sorted(set(reports)):
        raise _refuse("the manifest's reports must be sorted, each once")
    keys = dict(_pairs(body["k"], "the manifest's revision keys", 32, bytes))
    if any(len(k) != 32 for k in keys.values()):
        raise _refuse("a disclosed message key is not 32 bytes")
    labels = dict(_pairs(body["l"], "the manifest's labels", 16, str))
    if not isinstance(body["h"], dict) or set(body["h"]) != set(SECTIONS):
        raise _refuse("the manifest must hash every section of the contents")

    chain = _rosters(contents, body)
    newest = chain[-1].roster
    signer = newest.member(manifest.signer)
    if signer is None or str(signer.role) != "coordinator" or not signer.active:
        raise _refuse(
            f"the manifest is signed by {short(manifest.signer)}, not an active coordinator of"
            f" roster version {newest.version}"
        )
    try:
        manifest.verify(signer.signing_key)
    except VerificationFailed:
        raise _refuse("the exporter's signature on the manifest does not verify") from None
    members = _members(chain, labels)

    raw = contents["e"]
    if not isinstance(raw, list) or not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(x, bytes) for x in e) for e in raw
    ):
        raise _refuse("the revisions section is malformed")
    report_set = set(reports)
    facts: dict[bytes, tuple[Any, ReportContent, Member]] = {}
    for envelope_bytes, content_bytes in raw:
        envelope, content, member = _revision(
            envelope_bytes, content_bytes, keys, report_set, chain, org
        )
        if envelope.id in facts:
            raise _refuse(f"revision {short(envelope.id)} is in the bundle twice")
        facts[envelope.id] = (envelope, content, member)
    for rid in keys:
        if rid not in facts:
            raise _refuse(
                f"revision {short(rid)}, listed in the signed manifest, is not in the bundle"
                " (removed?)"
            )
    dags: dict[bytes, ReportDag] = {}
    for rid, (envelope, content, _) in facts.items():
        header = envelope.header
        for parent in header.parents:
            if parent not in facts or facts[parent][0].header.report != header.report:
                raise _refuse(
                    f"revision {short(rid)} names parent {short(parent)}, which the bundle does"
                    " not hold: the report's history is incomplete"
                )
        dag = dags.setdefault(header.report, ReportDag(header.report))
        try:
            dag.add(Revision(rid, header.report, header.parents, header.device, content))
        except MergeError:
            raise _refuse(f"revision {short(rid)} is inconsistent with its report") from None
    for report in reports:
        if report not in dags:
            raise _refuse(f"report {short(report)} is named in the manifest but has no revision")

    attachments = _attachments(contents["a"], facts)
    checkpoints, logged = check_log(contents["c"], org, newest.server_key, set(facts))
    for name in SECTIONS:
        if section_hash(name, contents[name]) != body["h"][name]:
            raise _refuse(
                f"the {SECTION_NAMES[name]} section differs from the one the exporter signed"
            )
    if not isinstance(contents["s"], str):
        raise _refuse("the summary must be text")
    revisions = {
        rid: RevisionFact(
            rid,
            e.header.report,
            e.header.device,
            str(m.role),
            e.header.seq,
            e.header.key_seq,
            e.header.roster_version,
            e.header.parents,
            e.header.witnessed_log[0],
            content,
            logged.get(rid),
        )  # fmt: skip
        for rid, (e, content, m) in facts.items()
    }
    return VerifiedBundle(
        org_id=org,
        reports=tuple(reports),
        genesis_fingerprint=chain[0].hash,
        fingerprint=chain[-1].hash,
        roster_version=newest.version,
        server_key_id=newest.server_key.key_id,
        exporter=manifest.signer,
        exported_at=body["t"],
        revisions=revisions,
        members=members,
        attachments=attachments,
        checkpoints=checkpoints,
        summary=contents["s"],
        states={r: dag.state() for r, dag in sorted(dags.items())},
        message_keys=keys,
    )


def _attachments(
    raw: Any, facts: Mapping[bytes, tuple[Any, ReportContent, Member]]
) -> dict[bytes, AttachmentFact]:
    named: dict[bytes, list[AttachmentManifest]] = {}
    for _, content, _ in facts.values():
        for entry in content.attachments:
            named.setdefault(entry.attachment_id, []).append(entry)
    data = dict(_pairs(raw, "the attachments section", 16, bytes))
    out = {}
    for attachment_id, entries in sorted(named.items()):
        blob = data.pop(attachment_id, None)
        if blob is not None:
            for entry in entries:
                if len(blob) != entry.size or hashlib.sha256(blob).digest() != entry.sha256:
                    raise _refuse(
                        f"attachment {entry.name!r} ({short(attachment_id)}) does not match the"
                        " size and SHA-256 its signed revision states"
                    )
        out[attachment_id] = AttachmentFact(entries[0], blob is not None)
    for attachment_id in data:
        raise _refuse(f"attachment {short(attachment_id)} is named by no revision of the bundle")
    return out
