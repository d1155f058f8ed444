"""Assemble an evidence bundle from a coordinator's local state (PROTOCOL §22, docs/EVIDENCE.md).

`export_bundle(profile, reports, ...)` is the one entry point (the CLI's `sealbox evidence
export`, and Sealbox Desk later): it takes, for the chosen reports only, every verified
revision's envelope, the message key MK_(n-c) the coordinator's view opened it with (never a
chain key: those would open the author's other revisions), the content, the attachments'
plaintexts (through ``fetch``, since a coordinator keeps none), the roster chain this profile
verified from genesis, and the kept checkpoints with inclusion proofs
(`clients.local.evidence_log`).  It signs the manifest with the profile's own key, renders
the summary from the verified bundle, and verifies the result before returning it: an
exporter never hands out a bundle its own verifier refuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from clients.local.evidence_log import log_proofs
from clients.local.evidence_summary import render_summary
from clients.local.profile import Profile

# One place opens a device's sealed label (the CLI's devices list, the Desk, evidence).
from clients.reference_cli.device_commands import device_label
from crypto import encoding, open_revision, parse_envelope
from sync.evidence import Bundle, RevisionPart, build_bundle, verify_bundle
from sync.report import AttachmentManifest

__all__ = ["EvidenceExportError", "Fetch", "export_bundle"]

Fetch = Callable[[AttachmentManifest], bytes | None]
"""Returns an attachment's verified plaintext, or None to leave it out of the bundle."""


class EvidenceExportError(Exception):
    """The chosen reports cannot be exported as they are (the message says why)."""


def _labels(profile: Profile, devices: set[bytes]) -> dict[bytes, str]:
    """Labels this profile can open (devices it invited, and itself): the exporter's claim."""
    invites = {bytes.fromhex(n): encoding.decode(raw) for n, raw in profile.store.items("invite")}
    out: dict[bytes, str] = {}
    for name, document in profile.store.items("enroll"):
        device = bytes.fromhex(name)
        label = device_label(document, device, invites) if device in devices else None
        if label is not None:
            out[device] = label
    if profile.device_id in devices and profile.meta.get("label"):
        out[profile.device_id] = str(profile.meta["label"])
    return out


def export_bundle(
    profile: Profile,
    reports: Sequence[bytes],
    *,
    now: int,
    fetch: Fetch = lambda entry: None,
    labels: bool = False,
) -> bytes:
    """The bundle for ``reports`` (verified reports of this coordinator's view), signed at
    ``now`` (this machine's clock, stated in the bundle as the exporter's claim).

    ``labels``: also state the devices' labels this profile can read (names of people:
    off by default).  Raises `EvidenceExportError` for a report that is unknown, not
    verified, or whose roster chain this profile does not hold from genesis."""
    view = profile.view()
    chain = profile.roster_chain()
    versions = [v.roster.version for v in chain]
    if not chain or versions != list(range(1, len(chain) + 1)):
        raise EvidenceExportError(
            "this profile does not hold the roster chain from version 1 (sync, then export again)"
        )
    newest = chain[-1]
    parts: list[RevisionPart] = []
    attachments: dict[bytes, bytes] = {}
    for report in sorted(set(reports)):
        state = view.verification(report)
        if report not in view.report_ids(include_unverified=False):
            raise EvidenceExportError(f"report {report.hex()} is not a verified report here")
        if state.state != "verified":
            raise EvidenceExportError(
                f"report {report.hex()} is {state.state} ({', '.join(state.reasons)}): only"
                " verified reports are exported as evidence"
            )
        for revision in view.revisions(report):
            data = view.envelopes[revision.id]
            key = view.message_key(revision.id)
            if key is None:
                raise EvidenceExportError(f"revision {revision.id.hex()} has no message key here")
            envelope = parse_envelope(data)
            member = newest.roster.member(envelope.header.device)
            if member is None:
                raise EvidenceExportError(f"revision {revision.id.hex()}: author not in roster")
            content = open_revision(envelope, author=member.signing_key, message_key=key)
            parts.append(RevisionPart(data, envelope.id, key.raw, content))
            for entry in revision.content.attachments:
                if entry.attachment_id not in attachments:
                    blob = fetch(entry)
                    if blob is not None:
                        attachments[entry.attachment_id] = blob
    if not parts:
        raise EvidenceExportError("no report chosen")
    devices = {parse_envelope(p.envelope).header.device for p in parts}
    log = log_proofs(
        profile.store,
        [p.envelope_id for p in parts],
        org_id=profile.org_id,
        server_key=newest.roster.server_key,
    )
    bundle = Bundle(
        org_id=profile.org_id,
        reports=tuple(sorted(set(reports))),
        rosters=tuple(v.to_bytes() for v in chain),
        revisions=tuple(parts),
        attachments=attachments,
        log=log,
        labels=_labels(profile, devices) if labels else {},
    )

    def sign(parts: Bundle) -> bytes:
        return build_bundle(
            parts, fingerprint=newest.hash, exported_at=now, exporter=profile.signing_key
        )

    draft = verify_bundle(sign(bundle))
    final = sign(dataclasses.replace(bundle, summary=render_summary(draft)))
    verify_bundle(final)
    return final
