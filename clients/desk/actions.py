"""Every write the Desk makes, through the same functions the CLI commands call.

Sealing goes through `clients.local.sealing` (as `report edit`, `conflicts resolve` and
`report new --attach`), exports through `clients.local.export` (as `reports export`),
syncing through `clients.local.syncing.run_sync` (as `sealbox sync`), devices and invites
through the same `sync.client` flows as the `devices` and `invite` commands.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from clients.local import invites as local_invites
from clients.local.attachment_reading import attachment_plaintext
from clients.local.evidence import EvidenceExportError, export_bundle
from clients.local.export import export_csv, export_json
from clients.local.profile import Profile
from clients.local.revocation import RevocationRefused, revoke_member
from clients.local.sealing import local_copy, seal_attachment, seal_revision
from clients.local.syncing import run_sync
from clients.local.transport import NetworkError
from clients.reference_cli.common import Code, Exit, _call, _fields, _transport
from clients.reference_cli.device_commands import device_label
from crypto import VerificationFailed, encoding
from sync.client import (
    DEFAULT_BOUNDS,
    Request,
    ServerMisbehaved,
    SyncRefused,
    cancelled_invite,
    devices_flow,
    drive,
)
from sync.invite import Enrollment, Invite, InviteError, InviteState
from sync.merge import ReportState
from sync.messages import b64encode
from sync.report import AttachmentManifest, ReportContent
from sync.roster import Role, format_fingerprint

from .reading import Row

MAX_TEXT = 100_000


def edit(profile: Profile, state: ReportState, name: str, value: str, note: str) -> bytes | None:
    """A revision on top of ``state``'s heads changing field ``name`` and/or adding ``note``."""
    fields = _fields([f"{name}={value}"]) if name else {}
    notes = (note,) if note.strip() else ()
    if not fields and not notes:
        raise Exit(Code.LOCAL, "nothing to write: give a field or a note")
    content = ReportContent(client_time=int(time.time()), fields=fields, notes=notes)
    return seal_revision(profile, state.report, content, state.heads)


def resolve(profile: Profile, state: ReportState, choices: dict[str, str]) -> list[str]:
    """A resolving revision (parents: all heads) with ``choices``; the fields still in conflict.

    The same checks as `sealbox conflicts resolve`: only fields in conflict, at least one.
    """
    in_conflict = {f.name for f in state.conflicts}
    if not choices:
        raise Exit(Code.LOCAL, "choose a value for at least one field in conflict")
    others = sorted(set(choices) - in_conflict)
    if others:
        raise Exit(Code.LOCAL, f"field {others[0]!r} is not in conflict in this report")
    fields = _fields([f"{k}={v}" for k, v in choices.items()])
    content = ReportContent(client_time=int(time.time()), fields=fields, resolves=True)
    seal_revision(profile, state.report, content, state.heads)
    return [f.name for f in state.conflicts if f.name not in choices]


@dataclass
class SyncRun:
    """One sync, running or done, for the sync page: its progress, summary and failure."""

    summary: dict[str, Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=lambda: Progress(disable=True))
    at: float = field(default_factory=time.time)
    done: bool = False
    error: str = ""

    @property
    def steps(self) -> list[tuple[str, float, float]]:
        """(what, done, total) of each step with a total: sending, uploading."""
        return [(t.description, t.completed, t.total or 0) for t in self.progress.tasks]


def sync(profile: Profile, run: SyncRun) -> None:
    """`sealbox sync` for the Desk: the same `run_sync`, its progress kept in ``run``."""
    transport = _transport(profile, retries=2)
    try:
        run_sync(profile, transport, None, DEFAULT_BOUNDS.run_seconds, run.summary, run.progress)
    finally:
        run.summary["requests"] = transport.requests
        transport.close()


def devices(profile: Profile) -> list[dict[str, Any]]:
    """The server's device list with labels opened and roster state (as `devices list`)."""
    with _transport(profile) as transport:
        listed = drive(devices_flow(org_path=profile.org_path), transport.send)
    invites = {bytes.fromhex(n): encoding.decode(p) for n, p in profile.store.items("invite")}
    roster = profile.roster.roster
    out = []
    for d in listed.devices:
        label = device_label(d.enrollment, d.device_id, invites)
        if d.device_id == profile.device_id:
            label = profile.meta.get("label")
        member = roster.member(d.device_id)
        invite_id = _invite_of(d.enrollment)
        cancelled = invite_id is not None and (
            bool(invites.get(invite_id, {}).get("cancelled"))
            or cancelled_invite(d.cancellation, profile.roster) == invite_id
        )
        out.append(
            {
                "device_id": d.device_id.hex(),
                "code": format_fingerprint(d.device_id),
                "label": label,
                "role": d.role,
                "state": d.state,
                "in_roster": member is not None,
                "invite_cancelled": cancelled,  # never admitted, nor vouched for (§6.7)
                "revoked_after": member.revoked_after if member else None,
                "flags": list(d.flags),
                "me": d.device_id == profile.device_id,
            }
        )
    return out


def _invite_of(enrollment: bytes | None) -> bytes | None:
    """The invite a served enrollment claims, if its self-signature verifies."""
    if not enrollment:
        return None
    try:
        return Enrollment.parse_and_verify(enrollment)[0].invite_id
    except (InviteError, VerificationFailed, ValueError):
        return None


def revoke(profile: Profile, device_hex: str) -> int:
    """Revoke the roster member ``device_hex``; the new roster version (as `devices revoke`,
    whose rules are `clients.local.revocation`'s; the Desk does not revoke its own device)."""
    if device_hex == profile.device_id.hex():
        raise Exit(Code.LOCAL, "a coordinator cannot revoke itself here")
    with _transport(profile) as transport:
        try:
            return revoke_member(profile, transport, device_hex).roster_version
        except RevocationRefused as exc:
            raise Exit(Code.LOCAL, str(exc)) from None


def create_invite(profile: Profile, role: Role, seconds: int) -> dict[str, Any]:
    """Sign and register a one-time invite (as `invite create`); its code and expiry."""
    expires_at = int(time.time()) + seconds
    document, code = Invite.create(
        org_id=profile.org_id,
        role=role,
        expires_at=expires_at,
        roster_fingerprint=profile.roster.hash,
        server_url=profile.server_url,
        signing_key=profile.signing_key,
    )
    with _transport(profile) as transport:
        _call(
            transport,
            Request(
                "POST", f"{profile.org_path}/invites", {"invite": b64encode(document.to_bytes())}
            ),
        )
    profile.store.put_cbor(
        "invite",
        code.invite_id.hex(),
        {"secret": code.secret, "role": str(role), "expires_at": expires_at},
    )
    return {"code": code.encode(), "invite_id": code.invite_id.hex(), "expires_at": expires_at}


def invites(profile: Profile) -> tuple[list[dict[str, Any]], bool]:
    """Every invite the server lists and this profile's own, with what became of each (as
    `sealbox invites list`); when the server cannot be reached, this profile's own as it
    recorded them, and True (the page says so)."""
    transport = _transport(profile)
    offline = False
    try:
        rows = local_invites.list_invites(profile, transport)
    except (NetworkError, SyncRefused, ServerMisbehaved):
        rows, offline = local_invites.own_invites(profile), True
    finally:
        transport.close()
    shown = []
    for r in rows:
        # Cancelled here, and the server was not told yet: cancelling again sends it.
        resend = r.state is InviteState.CANCELLED and not r.cancel_sent
        shown.append(r.to_json() | {"open": r.state is InviteState.CREATED, "resend": resend})
    return shown, offline


def cancel_invite(profile: Profile, invite_hex: str) -> local_invites.Cancelled:
    """Cancel an invite here and on the server (PROTOCOL §6.7, as `sealbox invites cancel`):
    this profile admits nobody with it from now on, whatever the server does."""
    try:
        invite_id = bytes.fromhex(invite_hex)
    except ValueError:
        raise Exit(Code.LOCAL, "no such invite") from None
    if len(invite_id) != 16:
        raise Exit(Code.LOCAL, "no such invite")
    with _transport(profile) as transport:
        return local_invites.cancel_invite(profile, transport, invite_id)


def export(rows: list[Row], fmt: str) -> str:
    """The CLI's export (`reports export`): JSON exact, CSV through the formula-safe writer."""
    pairs = [(r.state, r.verification) for r in rows]
    return export_csv(pairs) if fmt == "csv" else export_json(pairs)


INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "audio/mpeg", "audio/ogg",
     "audio/wav", "audio/webm", "audio/mp4", "video/mp4", "video/webm", "video/ogg",
     "application/pdf"}
)  # fmt: skip
"""Media types the Desk shows inline. The type is the field device's word (hostile input):
anything else (text/html, image/svg+xml, XML...) is never served on the Desk's origin. A PDF
is framed by the report page (the browser's own viewer renders it, not as a page of the
Desk: `nosniff`, and the only frame the page's CSP allows is under /attachments/)."""

INLINE_MAX = 64 * 1024 * 1024
"""Attachments larger than this are not decrypted into memory for display."""


def attachment_bytes(profile: Profile, entry: AttachmentManifest) -> bytes:
    """Fetch, verify and decrypt one attachment in memory (never on disk), as `attachments get`
    does to a file: each chunk checked against the sealed manifest, then size and hash."""
    if entry.size > INLINE_MAX:
        raise Exit(Code.LOCAL, "too large to show here: use `sealbox attachments get`")
    local = local_copy(profile, entry)  # a carried photo opens with no server
    transport = None if local is not None else _transport(profile)
    try:
        return attachment_plaintext(transport, profile.org_path, entry, local=local)
    finally:
        if transport is not None:
            transport.close()


def evidence_bundle(profile: Profile, report: bytes) -> bytes:
    """One verifiable evidence bundle of ``report`` (PROTOCOL §22, docs/EVIDENCE.md), as
    `sealbox evidence export`: its attachments fetched and verified in memory, labels
    (people's names) left out."""
    try:
        return export_bundle(
            profile,
            [report],
            now=int(time.time()),
            fetch=lambda entry: attachment_bytes(profile, entry),
        )
    except EvidenceExportError as exc:
        raise Exit(Code.LOCAL, str(exc)) from None


# --- field mode ------------------------------------------------------------------------------
MAX_UPLOAD = 64 * 1024 * 1024
"""The most a new-report form may carry (files and text), held in memory while it is sealed."""


def seal_upload(profile: Profile, name: str, data: bytes) -> AttachmentManifest:
    """A file the browser sent, sealed from memory as `report new --attach` seals a file
    (`clients.local.sealing.seal_attachment`): no plaintext byte is ever written to disk,
    only the sealed copy. The browser's name loses any path part it carries."""
    name = Path(name.replace("\\", "/")).name
    return seal_attachment(profile, io.BytesIO(data), name)


def new_report(
    profile: Profile,
    fields: list[tuple[str, str]],
    note: str,
    files: list[tuple[str, bytes]],
) -> bytes:
    """`sealbox report new` for the Desk: fields, a note, files; sealed into the outbox."""
    import secrets

    pairs = [f"{k.strip()}={v}" for k, v in fields if k.strip()]
    notes = (note,) if note.strip() else ()
    if not pairs and not notes and not files:
        raise Exit(Code.LOCAL, "nothing to write: give a field, a note or a file")
    content = ReportContent(
        client_time=int(time.time()),
        fields=_fields(pairs),
        notes=notes,
        attachments=tuple(seal_upload(profile, n, d) for n, d in files),
    )
    report = secrets.token_bytes(16)
    seal_revision(profile, report, content, ())
    return report


def outbox(profile: Profile) -> dict[str, Any]:
    """What waits to be sent (as `sealbox outbox`) and the attachments still to upload."""
    from clients.reference_cli.attachments import pending_uploads

    state = profile.device_state()
    return {
        "queued": [
            {
                "seq": i.seq,
                "kind": "revision" if i.report else "sender-key",
                "report_id": i.report.hex() if i.report else "",
                "bytes": len(i.data),
            }
            for i in state.outbox
        ],
        "rejected": len(state.rejected),
        "sent": state.sent,
        "pending": [
            {"name": p.name, "bytes": p.manifest.total_size} for p in pending_uploads(profile.store)
        ],
    }
