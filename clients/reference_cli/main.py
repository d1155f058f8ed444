"""`sealbox`: the reference command-line client (field devices and coordinators).

Every command takes ``--home`` (default ``SEALBOX_HOME``, else a per-user data
directory) and ``--json``.  The passphrase comes from ``SEALBOX_PASSPHRASE`` or a
prompt.  Exit codes: 0 ok, 1 local error (wrong passphrase, bad input), 2 usage,
3 the server refused, 4 the server is unreachable, 5 the server misbehaved
(rollback, forged data: reported loudly, nothing is trusted or lost).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import mimetypes
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients.reference_cli.profile import Profile, default_home
from clients.reference_cli.store import Secrets, StoreError, wipe
from clients.reference_cli.transport import NetworkError, Transport, run_flow
from crypto import VerifyKey, encoding
from sync.engine import (
    Checkpoint,
    CoordinatorView,
    Limits,
    Request,
    ServerMisbehaved,
    SyncRefused,
    admit_flow,
    b64d,
    b64e,
    pull_flow,
    push_flow,
    revoke_flow,
    roster_flow,
    seal_edit,
    verify_enrollment,
)
from sync.invite import Enrollment, Invite, InviteCode, InviteError, open_label, seal_label
from sync.merge import ReportState
from sync.report import (
    DELETED,
    AttachmentManifest,
    ContentError,
    ReportContent,
    parse_field_assignments,
)
from sync.roster import Member, Role, Roster, RosterError, format_fingerprint

app = typer.Typer(
    help="Sealbox: sealed, offline-first incident reports.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print keys or plaintext in a traceback
)
org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
invite_app = typer.Typer(help="Invites for new devices (coordinators).", no_args_is_help=True)
report_app = typer.Typer(help="Write reports (works offline).", no_args_is_help=True)
reports_app = typer.Typer(help="Read merged reports (coordinators).", no_args_is_help=True)
conflicts_app = typer.Typer(
    help="Concurrent edits of one field (coordinators).", no_args_is_help=True
)
devices_app = typer.Typer(help="Enrolled devices (coordinators).", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(invite_app, name="invite")
app.add_typer(report_app, name="report")
app.add_typer(reports_app, name="reports")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(devices_app, name="devices")

Home = Annotated[
    Path | None, typer.Option("--home", help="Profile directory (default: $SEALBOX_HOME).")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
err = Console(stderr=True)
T = TypeVar("T")


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _home(home: Path | None) -> Path:
    return (home or default_home()).expanduser()


def _out(as_json: bool, data: Any, human: Callable[[], object]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        human()


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Map every expected failure to a clear message and exit code."""
    code, message = 0, ""
    try:
        yield
    except Exit as exc:
        code, message = exc.code, str(exc)
    except StoreError as exc:
        code, message = 1, str(exc)
    except (ContentError, InviteError, ValueError) as exc:
        code, message = 1, str(exc)
    except SyncRefused as exc:
        code, message = 3, _explain_refusal(exc)
    except NetworkError as exc:
        code, message = 4, str(exc)
    except (ServerMisbehaved, RosterError) as exc:
        code, message = (
            5,
            f"SERVER MISBEHAVED: {exc}. Nothing was trusted and nothing queued was lost.",
        )
    if code:
        if as_json:
            sys.stdout.write(json.dumps({"error": message, "exit_code": code}) + "\n")
        err.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(code)


def _explain_refusal(exc: SyncRefused) -> str:
    hints = {
        "device_revoked": "this device has been revoked by a coordinator; it can no longer sync. "
        "Queued reports were kept on this device.",
        "invite_unusable": "the invite is expired, already used or wrong; ask a coordinator for a new one",
        "admin_token_invalid": "the admin token is missing or wrong (set SEALBOX_ADMIN_TOKEN)",
        "admin_token_unset": "the server operator has not enabled organisation creation",
        "forbidden": "this device's role may not do that",
        "unknown_org": "the server does not know this organisation (or this device)",
    }
    hint = hints.get(exc.code or "")
    return f"{hint} ({exc.detail})" if hint else str(exc)


@contextmanager
def _profile(home: Path | None) -> Iterator[Profile]:
    profile = Profile.open(_home(home))
    try:
        yield profile
    finally:
        profile.close()


def _transport(profile: Profile | None, url: str | None = None, **kw: Any) -> Transport:
    base = url or (profile.server_url if profile else "")
    return Transport(base, signing_key=profile.signing_key if profile else None, **kw)


def _require_coordinator(profile: Profile) -> None:
    if profile.role is not Role.COORDINATOR:
        raise Exit(1, "only coordinators can do this (field devices cannot read reports)")


def _parse_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if not match:
        raise Exit(1, "durations look like 30m, 24h or 7d")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# --- org ---------------------------------------------------------------------------------------


@org_app.command("create")
def org_create(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000")],
    name: Annotated[str, typer.Option(help="Organisation name (kept on this device only).")],
    admin_token: Annotated[
        str | None,
        typer.Option(envvar="SEALBOX_ADMIN_TOKEN", help="The server operator's admin token."),
    ] = None,
    label: Annotated[str, typer.Option(help="A name for this device.")] = "coordinator",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Create an organisation; this profile becomes its founding coordinator."""
    with _errors(as_json):
        path = _home(home)
        if (path / "keyfile").exists():
            raise Exit(1, f"a profile already exists in {path}; use another --home")
        if not admin_token:
            raise Exit(1, "an admin token is needed (--admin-token or SEALBOX_ADMIN_TOKEN)")
        transport = Transport(server)
        info = transport.send(Request("GET", "/v1/server", signed=False))
        if info.status != 200:
            raise SyncRefused.from_response(info)
        secret = Secrets.generate(coordinator=True)
        key, kem = secret.signing_key, secret.kem_key
        assert kem is not None
        org_id = secrets.token_bytes(16)
        me = Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)
        genesis = Roster(
            org_id, 1, bytes(32), VerifyKey(b64d(info.body["server_key"])), (me,)
        ).sign(key)
        response = transport.send(
            Request("POST", "/v1/orgs", {"roster": b64e(genesis.to_bytes())}, signed=False),
            bearer=admin_token,
        )
        if response.status not in (200, 201):
            raise SyncRefused.from_response(response)
        meta = {
            "server": server.rstrip("/"),
            "org": org_id,
            "device": key.verify_key.key_id,
            "role": str(Role.COORDINATOR),
            "name": name,
            "label": label,
            "created": int(time.time()),
        }
        Profile.create(path, secret, meta, genesis).close()
        data = {
            "org_id": org_id.hex(),
            "device_id": key.verify_key.key_id.hex(),
            "roster_fingerprint": genesis.hash.hex(),
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Organisation [bold]{name}[/] created.\n  org id    {org_id.hex()}\n"
                f"  device id {key.verify_key.key_id.hex()}\n"
                f"  roster    {format_fingerprint(genesis.hash)}"
            ),
        )


# --- invites and enrollment ------------------------------------------------------------------------


@invite_app.command("create")
def invite_create(
    role: Annotated[Role, typer.Option(help="field or coordinator")] = Role.FIELD,
    expires: Annotated[str, typer.Option(help="Lifetime, e.g. 30m, 24h, 7d.")] = "24h",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Sign and register a one-time invite; print its code (and a QR code)."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        expires_at = int(time.time()) + _parse_duration(expires)
        roster = profile.roster
        document, code = Invite.create(
            org_id=profile.org_id,
            role=role,
            expires_at=expires_at,
            roster_fingerprint=roster.hash,
            server_url=profile.server_url,
            signing_key=profile.signing_key,
        )
        transport = _transport(profile)
        run_flow(
            _single(
                Request(
                    "POST", f"{profile.org_path}/invites", {"invite": b64e(document.to_bytes())}
                )
            ),
            transport,
        )
        profile.store.put_cbor(
            "invite", code.invite_id.hex(), {"secret": code.secret, "role": str(role)}
        )
        text = code.encode()
        data = {
            "code": text,
            "invite_id": code.invite_id.hex(),
            "role": str(role),
            "expires_at": expires_at,
        }

        def human() -> None:
            import segno

            segno.make(text, error="m").terminal(compact=True)
            sys.stdout.write(text + "\n")
            err.print(
                f"One-time {role} invite, valid until {time.strftime('%Y-%m-%d %H:%M', time.localtime(expires_at))}."
            )

        _out(as_json, data, human)


def _single(request: Request) -> Any:
    response = yield request
    if response is None or response.status not in (200, 201):
        raise SyncRefused.from_response(response)
    return response.body


@app.command()
def enroll(
    code: Annotated[str, typer.Argument(help="The sbx1: invite code.")],
    label: Annotated[
        str, typer.Option(help="A name for this device, shown to coordinators.")
    ] = "device",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Join an organisation with an invite code: create this device's keys and register them."""
    with _errors(as_json):
        path = _home(home)
        if (path / "keyfile").exists():
            raise Exit(1, f"a profile already exists in {path}; use another --home")
        invite_code = InviteCode.decode(code)
        # The role is the invite's; a coordinator invite makes an HPKE key as well.
        secret_for_field = Secrets.generate(coordinator=False)
        key = secret_for_field.signing_key
        sealed = seal_label(
            label,
            secret=invite_code.secret,
            invite_id=invite_code.invite_id,
            device_id=key.verify_key.key_id,
        )
        transport = Transport(invite_code.server_url)
        results = []
        for role in (Role.FIELD, Role.COORDINATOR):
            enrollment = Enrollment(
                invite_code.org_id, invite_code.invite_id, key.verify_key, role, sealed
            )
            body = {
                "enrollment": b64e(enrollment.sign(key).to_bytes()),
                "secret": b64e(invite_code.secret),
            }
            response = transport.send(
                Request("POST", f"/v1/orgs/{b64e(invite_code.org_id)}/enroll", body, signed=False)
            )
            results.append(response)
            if response.status in (200, 201) or response.code != "enrollment_invalid":
                break
        response = results[-1]
        if response.status not in (200, 201):
            raise SyncRefused.from_response(response)
        roster, invite = verify_enrollment(invite_code, response.body)
        secret = secret_for_field
        if invite.role is Role.COORDINATOR:
            secret = Secrets(
                secret_for_field.signing_seed, secret_for_field.store_key, secrets.token_bytes(32)
            )
        meta = {
            "server": invite_code.server_url.rstrip("/"),
            "org": invite_code.org_id,
            "device": key.verify_key.key_id,
            "role": str(invite.role),
            "name": "",
            "label": label,
            "created": int(time.time()),
        }
        Profile.create(path, secret, meta, roster).close()
        data = {
            "device_id": key.verify_key.key_id.hex(),
            "org_id": invite_code.org_id.hex(),
            "role": str(invite.role),
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Enrolled as a {invite.role} device.\n  device id {data['device_id']}\n"
                f"  roster    {format_fingerprint(roster.hash)} (matches the invite)"
            ),
        )


# --- writing reports ---------------------------------------------------------------------------------


def _manifest(path: Path) -> AttachmentManifest:
    data = path.read_bytes()
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return AttachmentManifest(
        secrets.token_bytes(16), path.name[:255], len(data), hashlib.sha256(data).digest(), media
    )


def _seal(
    profile: Profile, report: bytes, content: ReportContent, parents: tuple[bytes, ...] | None
) -> bytes:
    state = profile.device_state()
    envelope = seal_edit(
        state,
        roster=profile.roster,
        signing_key=profile.signing_key,
        report=report,
        content=content,
        parents=parents,
    )
    with profile.store.transaction():
        profile.save_device(state)
        if profile.role is Role.COORDINATOR:
            # A coordinator seals to itself too: keep its own revisions readable at once.
            profile.keep_envelopes(
                [i.data for i in state.outbox if i.envelope_id == envelope.id or i.report is None]
            )
    return envelope.id


def _resolve_report(view: CoordinatorView | None, profile: Profile, prefix: str) -> bytes:
    candidates = set(profile.device_state().heads)
    if view is not None:
        candidates |= set(view.reports())
    matches = [r for r in candidates if r.hex().startswith(prefix.lower())]
    if len(matches) != 1:
        raise Exit(1, f"no single report matches {prefix!r}")
    return matches[0]


@report_app.command("new")
def report_new(
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="KEY=VALUE (repeatable).")
    ] = None,
    note: Annotated[list[str] | None, typer.Option("--note", help="A note (repeatable).")] = None,
    attach: Annotated[
        list[Path] | None, typer.Option("--attach", help="A file (repeatable).")
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Write a new report; it is sealed into the outbox at once (no network needed)."""
    with _errors(as_json), _profile(home) as profile:
        content = ReportContent(
            client_time=int(time.time()),
            fields=parse_field_assignments(field or []),
            notes=tuple(note or ()),
            attachments=tuple(_manifest(p) for p in attach or ()),
        )
        report = secrets.token_bytes(16)
        revision = _seal(profile, report, content, ())
        data = {"report_id": report.hex(), "revision_id": revision.hex()}
        _out(as_json, data, lambda: sys.stdout.write(f"{report.hex()}\n"))


@report_app.command("import")
def report_import(
    source: Annotated[
        Path, typer.Argument(help="JSON lines, one {field: value} object per report.")
    ],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Seal many new reports from a JSON-lines file (one sealed revision each)."""
    with _errors(as_json), _profile(home) as profile:
        state = profile.device_state()
        roster, key = profile.roster, profile.signing_key
        ids = []
        for line in source.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            fields = {str(k): str(v) for k, v in json.loads(line).items()}
            report = secrets.token_bytes(16)
            content = ReportContent(client_time=int(time.time()), fields=fields)
            seal_edit(
                state, roster=roster, signing_key=key, report=report, content=content, parents=()
            )
            ids.append(report.hex())
        profile.save_device(state)
        _out(
            as_json,
            {"report_ids": ids},
            lambda: err.print(f"{len(ids)} reports sealed into the outbox."),
        )


@report_app.command("edit")
def report_edit(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="KEY=VALUE, or KEY! to delete.")
    ] = None,
    note: Annotated[list[str] | None, typer.Option("--note", help="A note (repeatable).")] = None,
    attach: Annotated[
        list[Path] | None, typer.Option("--attach", help="A file (repeatable).")
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Edit a report: the changed fields become a new revision on top of the heads this device knows."""
    with _errors(as_json), _profile(home) as profile:
        view = profile.view() if profile.role is Role.COORDINATOR else None
        report = _resolve_report(view, profile, report_id)
        parents: tuple[bytes, ...] | None = None
        if view is not None and view.report(report) is not None:
            state = view.report(report)
            assert state is not None
            parents = state.heads
        content = ReportContent(
            client_time=int(time.time()),
            fields=parse_field_assignments(field or []),
            notes=tuple(note or ()),
            attachments=tuple(_manifest(p) for p in attach or ()),
        )
        revision = _seal(profile, report, content, parents)
        _out(
            as_json,
            {"report_id": report.hex(), "revision_id": revision.hex()},
            lambda: sys.stdout.write(f"{report.hex()}\n"),
        )


@app.command()
def outbox(home: Home = None, as_json: Json = False) -> None:
    """What waits to be sent (and anything the server refused, kept aside)."""
    with _errors(as_json), _profile(home) as profile:
        state = profile.device_state()
        queued = [
            {
                "seq": i.seq,
                "kind": "revision" if i.report else "sender-key",
                "report_id": i.report.hex() if i.report else None,
                "bytes": len(i.data),
            }
            for i in state.outbox
        ]
        rejected = [
            {
                "seq": i.seq,
                "report_id": i.report.hex() if i.report else None,
                "status": s,
                "detail": d,
            }
            for i, s, d in state.rejected
        ]
        data = {"count": len(queued), "queued": queued, "rejected": rejected, "sent": state.sent}

        def human() -> None:
            table = Table(
                "seq",
                "kind",
                "report",
                "bytes",
                title=f"Outbox: {len(queued)} waiting, {state.sent} sent",
            )
            for q in queued:
                table.add_row(
                    str(q["seq"]), q["kind"], (q["report_id"] or "")[:12], str(q["bytes"])
                )
            Console().print(table)
            for r in rejected:
                err.print(
                    f"[yellow]refused by the server, kept aside:[/] seq {r['seq']} {r['status']}: {r['detail']}"
                )

        _out(as_json, data, human)


# --- sync --------------------------------------------------------------------------------------------


@app.command()
def sync(
    batch_size: Annotated[
        int | None, typer.Option(help="At most this many envelopes per request.")
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries per request on network errors.")] = 5,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Push the outbox, store receipts, purge what was received; coordinators also pull and decrypt."""
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


def _sync_text(s: dict[str, Any]) -> str:
    lines = [
        f"Pushed: {s.get('stored', 0)} stored, {s.get('purged', 0)} purged on receipt, {s.get('outbox', 0)} still queued."
    ]
    if s.get("rejected"):
        lines.append(
            f"[yellow]{s['rejected']} refused by the server (kept aside, see `sealbox outbox`).[/]"
        )
    if "reports" in s:
        lines.append(
            f"Pulled: {s['pulled']} new envelopes; {s['reports']} reports, {s['conflicts']} with conflicts."
        )
    for finding in s.get("findings", []):
        lines.append(f"[bold red]WARNING[/] {finding}")
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
    except ServerMisbehaved as exc:
        profile.warn(f"roster: {exc}")
        raise
    if fresh:
        profile.set_roster(roster)
    profile.meta["roster_checked"] = int(time.time())
    me = roster.roster.member(profile.device_id)
    if me is not None and me.revoked_after is not None:
        raise Exit(
            3,
            "this device has been revoked by a coordinator; it can no longer sync. Queued reports were kept.",
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
    roster, verified = run_flow(
        admit_flow(
            org_path=profile.org_path, trusted=profile.roster, signing_key=profile.signing_key
        ),
        transport,
    )
    with profile.store.transaction():
        profile.set_roster(roster)
        profile.save_enrollments(verified, documents)
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

    cursor, _ = run_flow(
        pull_flow(view, org_path=profile.org_path, cursor=profile.meta.get("cursor")),
        transport,
        persist,
    )
    profile.meta["cursor"] = cursor
    profile.save_meta()
    reports = view.reports()
    summary.update(
        pulled=pulled,
        reports=len(reports),
        conflicts=sum(1 for s in reports.values() if s.conflicts),
        findings=[f.text() for f in view.findings()],
        roster_version=roster.roster.version,
    )


# --- reading (coordinators) ------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    return "(deleted)" if value is DELETED else str(value)


def _state_lines(state: ReportState) -> list[str]:
    lines = [
        f"report {state.report.hex()}  ({state.revision_count} revisions, {len(state.heads)} heads)"
    ]
    for f in state.fields:
        if f.conflict:
            lines.append(f"  {f.name}: CONFLICT")
            for w in f.writes:
                when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(w.client_time))
                lines.append(
                    f"      - {_value_text(w.value)!r}  by {w.author.hex()[:12]} at {when} UTC (client clock)"
                )
        else:
            lines.append(f"  {f.name}: {_value_text(f.writes[0].value)}")
    for n in state.notes:
        lines.append(f"  note by {n.author.hex()[:12]}: {n.text}")
    for a in state.attachments:
        lines.append(
            f"  attachment {a.name} ({a.size} bytes, {a.media_type}, sha256 {a.sha256.hex()[:16]}...)"
        )
    if state.missing:
        lines.append(f"  WARNING {len(state.missing)} parent revisions not seen yet")
    return lines


def _coordinator_view(profile: Profile) -> CoordinatorView:
    _require_coordinator(profile)
    view = profile.view()
    for finding in view.findings():
        err.print(f"[bold red]WARNING[/] {finding.text()}", highlight=False)
    return view


@reports_app.command("list")
def reports_list(home: Home = None, as_json: Json = False) -> None:
    """Every report, merged, with conflicts counted."""
    with _errors(as_json), _profile(home) as profile:
        view = _coordinator_view(profile)
        states = view.reports()
        data = [
            {
                "report_id": r.hex(),
                "revisions": s.revision_count,
                "conflicts": [f.name for f in s.conflicts],
                "fields": {
                    f.name: (None if f.conflict else _json_value(f.writes[0].value))
                    for f in s.fields
                },
            }
            for r, s in states.items()
        ]

        def human() -> None:
            table = Table("report", "revisions", "conflicts", "fields")
            for d in data:
                summary = ", ".join(f"{k}={v}" for k, v in list(d["fields"].items())[:3])
                table.add_row(
                    d["report_id"][:12],
                    str(d["revisions"]),
                    ", ".join(d["conflicts"]) or "-",
                    summary,
                )
            Console().print(table)

        _out(as_json, data, human)


def _json_value(value: Any) -> Any:
    return {"deleted": True} if value is DELETED else value


@reports_app.command("show")
def reports_show(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """One report's merged state: every field, conflicting values with author and time, notes."""
    with _errors(as_json), _profile(home) as profile:
        view = _coordinator_view(profile)
        state = view.report(_resolve_report(view, profile, report_id))
        if state is None:
            raise Exit(1, "this report has no readable revision yet (sync first)")
        _out(
            as_json,
            state.to_json(),
            lambda: sys.stdout.write("\n".join(_state_lines(state)) + "\n"),
        )


@reports_app.command("export")
def reports_export(
    format: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default: stdout).")
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Export every merged report (conflicts kept: one CSV row per surviving value)."""
    with _errors(as_json), _profile(home) as profile:
        view = _coordinator_view(profile)
        states = list(view.reports().values())
        if format == "json":
            text = json.dumps([s.to_json() for s in states], indent=2, sort_keys=True) + "\n"
        elif format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(
                [
                    "report_id",
                    "field",
                    "value",
                    "deleted",
                    "conflict",
                    "author",
                    "revision",
                    "client_time",
                ]
            )
            for s in states:
                for f in s.fields:
                    for w in f.writes:
                        writer.writerow(
                            [
                                s.report.hex(),
                                f.name,
                                "" if w.deleted else w.value,
                                w.deleted,
                                f.conflict,
                                w.author.hex(),
                                w.revision.hex(),
                                w.client_time,
                            ]
                        )
            text = buffer.getvalue()
        else:
            raise Exit(1, "--format is json or csv")
        if output is None:
            sys.stdout.write(text)
        else:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            err.print(f"{len(states)} reports written to {output} (plaintext: keep it safe).")


@conflicts_app.command("list")
def conflicts_list(home: Home = None, as_json: Json = False) -> None:
    """Fields with concurrent values, per report."""
    with _errors(as_json), _profile(home) as profile:
        view = _coordinator_view(profile)
        data = []
        for report, state in view.reports().items():
            for f in state.conflicts:
                data.append(
                    {
                        "report_id": report.hex(),
                        "field": f.name,
                        "values": [
                            {
                                "value": _json_value(w.value),
                                "author": w.author.hex(),
                                "client_time": w.client_time,
                                "revision": w.revision.hex(),
                            }
                            for w in f.writes
                        ],
                    }
                )

        def human() -> None:
            if not data:
                err.print("No conflicts.")
            for d in data:
                sys.stdout.write(f"{d['report_id']} {d['field']}:\n")
                for v in d["values"]:
                    sys.stdout.write(
                        f"    {_value_text(DELETED if isinstance(v['value'], dict) else v['value'])!r} by {v['author'][:12]}\n"
                    )

        _out(as_json, data, human)


@conflicts_app.command("resolve")
def conflicts_resolve(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    field: Annotated[
        list[str],
        typer.Option("--field", "-f", help="KEY=VALUE (or KEY! to delete): the chosen value."),
    ],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Write a resolving revision whose parents are all the heads."""
    with _errors(as_json), _profile(home) as profile:
        view = _coordinator_view(profile)
        report = _resolve_report(view, profile, report_id)
        state = view.report(report)
        if state is None:
            raise Exit(1, "this report has no readable revision yet (sync first)")
        choices = parse_field_assignments(field)
        content = ReportContent(client_time=int(time.time()), fields=choices, resolves=True)
        revision = _seal(profile, report, content, state.heads)
        remaining = [f.name for f in state.conflicts if f.name not in choices]
        data = {"report_id": report.hex(), "revision_id": revision.hex(), "unresolved": remaining}
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Resolved; still in conflict: {', '.join(remaining) or 'nothing'}. Run `sealbox sync` to share it."
            ),
        )


# --- devices -------------------------------------------------------------------------------------------


@devices_app.command("list")
def devices_list(home: Home = None, as_json: Json = False) -> None:
    """Enrolled devices with their role, state, chain watermark and flags."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        body = run_flow(_single(Request("GET", f"{profile.org_path}/devices")), _transport(profile))
        invites = {bytes.fromhex(n): encoding.decode(p) for n, p in profile.store.items("invite")}
        roster = profile.roster.roster
        data = []
        for d in body.get("devices", []):
            device_id = b64d(d["device_id"])
            label = None
            if d.get("enrollment"):
                try:
                    enrollment, _ = Enrollment.parse_and_verify(b64d(d["enrollment"]))
                    known = invites.get(enrollment.invite_id)
                    if known is not None:
                        label = open_label(
                            enrollment.sealed_label,
                            secret=known["secret"],
                            invite_id=enrollment.invite_id,
                            device_id=device_id,
                        )
                except Exception:  # noqa: BLE001 - an unreadable label is shown as unknown
                    label = None
            if device_id == profile.device_id:
                label = profile.meta.get("label")
            member = roster.member(device_id)
            data.append(
                {
                    "device_id": device_id.hex(),
                    "label": label,
                    "role": d.get("role"),
                    "state": d.get("state"),
                    "in_roster": member is not None,
                    "revoked_after": member.revoked_after if member else None,
                    "watermark": d.get("watermark"),
                    "flags": d.get("flags", []),
                }
            )

        def human() -> None:
            table = Table("device", "label", "role", "state", "watermark", "flags")
            for x in data:
                table.add_row(
                    x["device_id"],
                    x["label"] or "?",
                    str(x["role"]),
                    str(x["state"]),
                    str(x["watermark"]),
                    ", ".join(x["flags"]) or "-",
                )
            Console().print(table)

        _out(as_json, data, human)


@devices_app.command("revoke")
def devices_revoke(
    device_id: Annotated[str, typer.Argument(help="Device id (hex, or a unique prefix).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Revoke a device (seized, lost): a new signed roster version; the server refuses its later uploads."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        transport = _transport(profile)
        roster, fresh = run_flow(
            roster_flow(org_path=profile.org_path, trusted=profile.roster), transport
        )
        if fresh:
            profile.set_roster(roster)
        matches = [
            m.device_id
            for m in roster.roster.members
            if m.device_id.hex().startswith(device_id.lower())
        ]
        if len(matches) != 1:
            raise Exit(
                1,
                f"no single roster member matches {device_id!r} (a device is revocable once admitted: sync first)",
            )
        if matches[0] == profile.device_id:
            raise Exit(1, "a coordinator cannot revoke itself here")
        new = run_flow(
            revoke_flow(
                org_path=profile.org_path,
                trusted=roster,
                signing_key=profile.signing_key,
                device_id=matches[0],
            ),
            transport,
        )
        profile.set_roster(new)
        revoked = new.roster.member(matches[0])
        assert revoked is not None
        data = {
            "device_id": matches[0].hex(),
            "revoked_after": revoked.revoked_after,
            "roster_version": new.roster.version,
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Device {matches[0].hex()} revoked after its seq {revoked.revoked_after} (roster v{new.roster.version})."
            ),
        )


# --- wipe and status ---------------------------------------------------------------


@app.command("wipe")
def wipe_command(
    panic: Annotated[
        bool, typer.Option("--panic", help="Destroy the keys first, then everything else.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Crypto-shred this profile: no passphrase needed, well under a second, irreversible."""
    with _errors(as_json):
        if not panic or not yes:
            raise Exit(1, "refusing: this destroys the profile for good; pass --panic --yes")
        seconds = wipe(_home(home))
        _out(
            as_json,
            {"wiped": True, "seconds": round(seconds, 4)},
            lambda: err.print(f"Wiped in {seconds * 1000:.0f} ms."),
        )


@app.command()
def status(home: Home = None, as_json: Json = False) -> None:
    """Who this profile is, its organisation, roster, outbox, last sync and warnings."""
    with _errors(as_json), _profile(home) as profile:
        roster = profile.roster
        state = profile.device_state()
        warnings = list(profile.meta.get("warnings", []))
        checked = profile.meta.get("roster_checked")
        if checked is None or time.time() - checked > 7 * 86400:
            warnings.append(
                "the roster has not been checked with the server for over 7 days (stale): sync"
            )
        me = roster.roster.member(profile.device_id)
        if me is None:
            warnings.append(
                "this device is enrolled but not yet admitted into the roster by a coordinator"
            )
        elif me.revoked_after is not None:
            warnings.append("this device is REVOKED")
        findings: list[str] = []
        if profile.role is Role.COORDINATOR:
            findings = [f.text() for f in profile.view().findings()]
        data = {
            "device_id": profile.device_id.hex(),
            "org_id": profile.org_id.hex(),
            "org_name": profile.meta.get("name"),
            "label": profile.meta.get("label"),
            "role": str(profile.role),
            "server": profile.server_url,
            "roster_version": roster.roster.version,
            "roster_fingerprint": roster.hash.hex(),
            "outbox": len(state.outbox),
            "rejected": len(state.rejected),
            "sent": state.sent,
            "chain_seq": state.seq,
            "last_sync": profile.meta.get("last_sync"),
            "warnings": warnings,
            "findings": findings,
        }

        def human() -> None:
            last = data["last_sync"]
            lines = [
                f"device    {data['device_id']} ({data['role']}, {data['label']})",
                f"org       {data['org_id']} {data['org_name'] or ''}",
                f"server    {data['server']}",
                f"roster    v{data['roster_version']} {format_fingerprint(roster.hash)}",
                f"outbox    {data['outbox']} waiting, {data['sent']} sent, {data['rejected']} refused",
                f"last sync {time.strftime('%Y-%m-%d %H:%M', time.localtime(last)) if last else 'never'}",
            ]
            sys.stdout.write("\n".join(lines) + "\n")
            for w in warnings + findings:
                err.print(f"[bold yellow]WARNING[/] {w}", highlight=False)

        _out(as_json, data, human)
