"""`sealbox sync`: push the outbox (resumable); coordinators also admit, pull, verify, decrypt."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clients.reference_cli.attachments import (
    AttachmentFailed,
    refresh_attachment_states,
    upload_pending,
)
from clients.reference_cli.common import (
    Exit,
    Home,
    Json,
    _errors,
    _out,
    _profile,
    _single,
    _transport,
    err,
)
from clients.reference_cli.profile import Profile
from clients.reference_cli.transport import Transport, run_flow
from crypto import encoding, parse_envelope
from sync.engine import (
    Checkpoint,
    CoordinatorView,
    DeviceState,
    Limits,
    OutboxItem,
    Request,
    RosterRollback,
    ServerMisbehaved,
    admit_flow,
    b64d,
    pull_flow,
    push_flow,
    repair_roster_flow,
    roster_flow,
)
from sync.invite import Enrollment
from sync.roster import Role

# --- sync -------------------------------------------------------------------------------------


def sync(
    batch_size: Annotated[
        int | None, typer.Option(help="At most this many envelopes per request.")
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries per request on network errors.")] = 5,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Push the outbox, keep receipts, purge what was received; coordinators also pull."""
    with _errors(as_json), _profile(home) as profile:
        transport = _transport(profile, retries=retries)
        summary: dict[str, Any] = {}
        try:
            _sync(profile, transport, batch_size, summary, quiet=as_json)
        finally:
            summary["bytes_sent"] = transport.bytes_sent
            summary["bytes_received"] = transport.bytes_received
            summary["requests"] = transport.requests
            transport.close()
        _out(as_json, summary, lambda: err.print(_sync_text(summary)))
        if summary.get("attachments_error"):
            err.print(f"[bold red]error:[/] {summary['attachments_error']} (kept queued)")
            raise typer.Exit(6)
        if summary.get("rejected"):
            err.print(
                f"[bold red]error:[/] the server refused {summary['rejected']} envelopes;"
                " they are kept aside on this device (see `sealbox outbox`)."
            )
            raise typer.Exit(3)


def _sync_text(s: dict[str, Any]) -> str:
    lines = [
        f"Pushed: {s.get('stored', 0)} stored, {s.get('purged', 0)} purged on receipt,"
        f" {s.get('outbox', 0)} still queued."
    ]
    if s.get("rejected"):
        lines.append(
            f"[yellow]{s['rejected']} refused by the server (kept aside, see `sealbox outbox`).[/]"
        )
    if "reports" in s:
        lines.append(
            f"Pulled: {s['pulled']} new envelopes; {s['reports']} reports,"
            f" {s['conflicts']} with conflicts."
        )
    for finding in s.get("findings", []):
        lines.append(f"[bold red]WARNING[/] {finding}")
    for device in s.get("admitted", []):
        lines.append(f"Admitted device {device[:12]} into the roster.")
    for reason in s.get("admission_refused", []):
        lines.append(f"[bold red]WARNING[/] admission refused: {reason}")
    if s.get("server_went_back"):
        lines.append(
            "[bold red]WARNING the server went back in time (restored?): re-pulled everything.[/]"
        )
    return "\n".join(lines)


def _sync(
    profile: Profile,
    transport: Transport,
    batch_size: int | None,
    summary: dict[str, Any],
    *,
    quiet: bool,
) -> None:
    info = transport.send(Request("GET", "/v1/server", signed=False))
    limits = Limits.from_server(info.body if info.status == 200 else {})
    if batch_size:
        limits = Limits(min(batch_size, limits.max_batch_items), limits.max_batch_bytes)
    # 1. The roster: verify the chain from what we trust (a rollback is refused).
    try:
        roster, fresh = run_flow(
            roster_flow(org_path=profile.org_path, trusted=profile.roster), transport
        )
    except RosterRollback as exc:
        # Never adopt the older roster. A coordinator re-posts the signed versions the
        # server lost (a restored server becomes a re-upload); everyone warns loudly.
        profile.warn(f"roster: {exc}")
        summary["roster_rollback"] = exc.served
        roster, fresh = profile.roster, []
        if profile.role is Role.COORDINATOR:
            summary["roster_reposted"] = run_flow(
                repair_roster_flow(
                    org_path=profile.org_path, chain=profile.roster_chain(), served=exc.served
                ),
                transport,
            )
    except ServerMisbehaved as exc:
        profile.warn(f"roster: {exc}")
        raise
    for version in fresh:
        profile.set_roster(version)
    profile.meta["roster_checked"] = int(time.time())
    me = roster.roster.member(profile.device_id)
    if me is not None and me.revoked_after is not None:
        raise Exit(
            3,
            "this device has been revoked by a coordinator; it can no longer sync."
            " Queued reports were kept.",
        )
    # 2. Push, checkpointing after every batch so a crash resumes where it stopped.
    state = profile.device_state()
    total = len(state.outbox)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or total == 0,
        transient=False,
    ) as progress:
        task = progress.add_task("Sending", total=total)

        def pushed(checkpoint: Checkpoint) -> None:
            profile.save_device(state)
            progress.update(task, completed=total - len(state.outbox))

        result = run_flow(
            push_flow(
                state, server_key=roster.roster.server_key, limits=limits, org_path=profile.org_path
            ),
            transport,
            pushed,
        )
    summary.update(
        stored=result.stored,
        purged=result.purged,
        rejected=result.rejected,
        outbox=len(state.outbox),
        splits=result.splits,
    )
    # 3. Coordinators: admit enrolled devices, then pull, verify and decrypt.
    if profile.role is Role.COORDINATOR:
        _pull(profile, transport, summary, quiet=quiet)
        refresh_attachment_states(profile, transport)  # for reports show (§13.5)
    # 4. Attachments last: a report never waits for its media (resumable, PROTOCOL §13).
    #    A failed upload stays queued and fails the command only after the reports synced.
    try:
        summary.update(upload_pending(profile, transport, quiet=quiet))
    except AttachmentFailed as exc:
        summary["attachments_error"] = str(exc)
    profile.meta["last_sync"] = int(time.time())
    profile.save_meta()


def _pull(profile: Profile, transport: Transport, summary: dict[str, Any], *, quiet: bool) -> None:
    documents: dict[bytes, bytes] = {}
    devices = run_flow(_single(Request("GET", f"{profile.org_path}/devices")), transport)
    for device in devices.get("devices", []):
        if device.get("enrollment"):
            try:
                enrollment, _ = Enrollment.parse_and_verify(b64d(device["enrollment"]))
                documents[enrollment.device_id] = b64d(device["enrollment"])
            except Exception:  # noqa: BLE001 - a bad document is simply not vouched for
                continue
    invites = {bytes.fromhex(n): encoding.decode(p) for n, p in profile.store.items("invite")}
    unused = {i: bytes(r["secret"]) for i, r in invites.items() if not r.get("admitted")}
    admission = run_flow(
        admit_flow(
            org_path=profile.org_path,
            trusted=profile.roster,
            signing_key=profile.signing_key,
            invite_secrets=unused,
        ),
        transport,
    )
    roster = admission.roster
    with profile.store.transaction():
        profile.set_roster(roster)
        profile.save_enrollments(list(admission.verified), documents)
        for invite_id, device_id in admission.admitted:
            # An invite admits at most one device (PROTOCOL §6.5).
            record = dict(invites[invite_id], admitted=device_id)
            profile.store.put_cbor("invite", invite_id.hex(), record)
    summary["admitted"] = [device.hex() for _, device in admission.admitted]
    for reason in admission.refused:
        profile.warn(f"admission refused: {reason}")
    if admission.refused:
        summary["admission_refused"] = list(admission.refused)
    view = profile.view()
    pulled = 0

    def persist(checkpoint: Checkpoint) -> None:
        nonlocal pulled
        if checkpoint.event == "ServerWentBackInTime":
            profile.warn(
                "the server went back in time (cursor from another epoch): re-pulled from the start"
            )
            summary["server_went_back"] = True
            return
        pulled += len(checkpoint.envelopes)
        profile.keep_envelopes(checkpoint.envelopes)

    cursor, rewound = run_flow(
        pull_flow(view, org_path=profile.org_path, cursor=profile.meta.get("cursor")),
        transport,
        persist,
    )
    profile.meta["cursor"] = cursor
    profile.save_meta()
    if rewound:
        summary["republished"] = _republish_own(profile, transport, view)
    reports = view.reports()
    summary.update(
        pulled=pulled,
        reports=len(reports),
        conflicts=sum(1 for s in reports.values() if s.conflicts),
        findings=[f.text() for f in view.findings()],
        roster_version=roster.roster.version,
    )


def _republish_own(profile: Profile, transport: Transport, view: CoordinatorView) -> int:
    """Re-push this coordinator's own envelopes to a server that went back in time."""
    own = []
    for envelope_id, data in view.envelopes.items():
        header = parse_envelope(data).header
        if header.device == profile.device_id:
            own.append(OutboxItem(envelope_id, data, header.seq, header.report))
    if not own:
        return 0
    state = DeviceState(org_id=profile.org_id, device_id=profile.device_id)
    state.outbox = sorted(own, key=lambda i: i.seq)
    result = run_flow(
        push_flow(
            state,
            server_key=profile.roster.roster.server_key,
            limits=Limits(),
            org_path=profile.org_path,
        ),
        transport,
    )
    return result.stored
