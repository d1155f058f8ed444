"""`sealbox`: the reference command-line client (field devices and coordinators).

Every command takes ``--home`` (default ``SEALBOX_HOME``, else a per-user data
directory; also accepted before the command: ``sealbox --home DIR status``) and
``--json``.  The passphrase comes from ``SEALBOX_PASSPHRASE`` or a prompt on the
terminal.  No command ends in a traceback: every failure is one line on stderr
(and ``{"error", "exit_code"}`` on stdout with ``--json``) and one of these exit
codes (`clients.reference_cli.common.Code`):

    0    ok
    1    local error: wrong passphrase, no passphrase, bad input, no profile, nothing to do
    2    usage: unknown option, missing argument, malformed option value
    3    the server refused (revoked device, unusable invite, wrong admin token, ...)
    4    the server is unreachable, or the connection dropped (after the retries)
    5    the server misbehaved (rollback, forged or malformed data: reported loudly,
         nothing is trusted or lost)
    6    an attachment failed to upload or verify (it stays queued)
    7    a local file or disk problem: missing path, no permission, read-only, disk full
    70   an internal error: a bug in sealbox (SEALBOX_DEBUG=1 shows the traceback)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.reference_cli.attachment_commands import attachments_app
from clients.reference_cli.attachments import seal_for_report
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _call,
    _errors,
    _fields,
    _home,
    _out,
    _parse_duration,
    _profile,
    _require_coordinator,
    _resolve_report,
    _save_sealed,
    _seal,
    _transport,
    err,
    invite_lifetime,
    os_message,
    server_url,
    set_global_home,
    stdout_broken,
)
from clients.reference_cli.coordinator import conflicts_app, devices_app, reports_app
from clients.reference_cli.profile import Profile
from clients.reference_cli.render import console, plural, safe, shown
from clients.reference_cli.store import Secrets, wipe
from clients.reference_cli.sync_command import sync
from clients.reference_cli.transport import Transport
from crypto import VerifyKey
from sync.client import Request, SyncRefused, decode, seal_edit, verify_enrollment
from sync.invite import Enrollment, Invite, InviteCode, seal_label
from sync.messages import ServerInfo, b64encode
from sync.report import ContentError, ReportContent, validate_field_name
from sync.roster import Member, Role, Roster, format_fingerprint


class _Sealbox(typer.Typer):
    """The app, with one last guard: standard output failing outside a command (--version,
    --help, a usage error printed to a full disk) is reported like any other file error."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except OSError as exc:
            if os.environ.get("SEALBOX_DEBUG"):
                raise
            broken = exc.filename is None and stdout_broken()
            where = "standard output: " if broken else ""
            err.print(f"[bold red]error:[/] {where}{shown(os_message(exc))}", highlight=False)
            sys.exit(int(Code.FILES))


app = _Sealbox(
    help="Sealbox: sealed, offline-first incident reports.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print keys or plaintext in a traceback
    # Off a terminal, usage errors and help are plain text (no box wrapped at 80 columns).
    rich_markup_mode="rich" if sys.stderr.isatty() else None,
)
org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
invite_app = typer.Typer(help="Invites for new devices (coordinators).", no_args_is_help=True)
report_app = typer.Typer(help="Write reports (works offline).", no_args_is_help=True)
app.command()(sync)
app.add_typer(org_app, name="org")
app.add_typer(invite_app, name="invite")
app.add_typer(report_app, name="report")
app.add_typer(reports_app, name="reports")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(devices_app, name="devices")
app.add_typer(attachments_app, name="attachments")


def _version(value: bool) -> None:
    if value:
        try:
            number = version("sealbox")
        except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
            number = "unknown"
        sys.stdout.write(f"sealbox {number} (protocol v1)\n")
        raise typer.Exit(0)


@app.callback()
def _main(
    home: Home = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Sealbox: sealed, offline-first incident reports."""
    set_global_home(home)


# --- org --------------------------------------------------------------------------------------


@org_app.command("create")
def org_create(
    server: Annotated[
        str, typer.Option(callback=server_url, help="Server URL, e.g. http://127.0.0.1:8000")
    ],
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
        if not admin_token:
            raise Exit(
                Code.LOCAL, "an admin token is needed (--admin-token or SEALBOX_ADMIN_TOKEN)"
            )
        secret_passphrase = Profile.prepare(path)
        transport = Transport(server)
        info = decode(
            _call(transport, Request("GET", "/v1/server", signed=False)),
            ServerInfo,
            what="server description",
        )
        secret = Secrets.generate(coordinator=True)
        key, kem = secret.signing_key, secret.kem_key
        assert kem is not None
        org_id = secrets.token_bytes(16)
        me = Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)
        genesis = Roster(org_id, 1, bytes(32), VerifyKey(info.server_key), (me,)).sign(key)
        _call(
            transport,
            Request("POST", "/v1/orgs", {"roster": b64encode(genesis.to_bytes())}, signed=False),
            bearer=admin_token,
        )
        meta = {
            "server": server.rstrip("/"),
            "org": org_id,
            "device": key.verify_key.key_id,
            "role": str(Role.COORDINATOR),
            "name": name,
            "label": label,
            "created": int(time.time()),
        }
        Profile.create(path, secret, meta, genesis, secret_passphrase=secret_passphrase).close()
        data = {
            "org_id": org_id.hex(),
            "device_id": key.verify_key.key_id.hex(),
            "roster_fingerprint": genesis.hash.hex(),
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Organisation [bold]{shown(name)}[/] created.\n  org id    {org_id.hex()}\n"
                f"  device id {key.verify_key.key_id.hex()}\n"
                f"  roster    {format_fingerprint(genesis.hash)}"
            ),
        )


# --- invites and enrollment -------------------------------------------------------------------


@invite_app.command("create")
def invite_create(
    role: Annotated[Role, typer.Option(help="field or coordinator")] = Role.FIELD,
    expires: Annotated[
        str,
        typer.Option(
            callback=invite_lifetime, help="Lifetime, e.g. 30m, 24h, 7d (at most 30 days)."
        ),
    ] = "24h",
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
        _call(
            transport,
            Request(
                "POST", f"{profile.org_path}/invites", {"invite": b64encode(document.to_bytes())}
            ),
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
            err.print(f"One-time {role} invite, valid until {_when(expires_at)}.")

        _out(as_json, data, human)


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
        invite_code = InviteCode.decode(code)
        secret_passphrase = Profile.prepare(path)
        # The role is the invite's (the code does not say it): try field, then coordinator,
        # which enrolls with its HPKE key so that it can be admitted into the roster.
        secret = Secrets.generate(coordinator=True)
        key, kem = secret.signing_key, secret.kem_key
        assert kem is not None
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
                invite_code.org_id,
                invite_code.invite_id,
                key.verify_key,
                role,
                sealed,
                kem.public_key if role is Role.COORDINATOR else None,
            )
            body = {
                "enrollment": b64encode(enrollment.sign(key).to_bytes()),
                "secret": b64encode(invite_code.secret),
            }
            response = transport.send(
                Request(
                    "POST", f"/v1/orgs/{b64encode(invite_code.org_id)}/enroll", body, signed=False
                )
            )
            results.append(response)
            if response.status in (200, 201) or response.code != "enrollment_invalid":
                break
        response = results[-1]
        if response.status not in (200, 201):
            raise SyncRefused.from_response(response)
        roster, invite, chain = verify_enrollment(invite_code, response)
        if invite.role is Role.FIELD:
            secret = Secrets(secret.signing_seed, secret.store_key, None)
        meta = {
            "server": invite_code.server_url.rstrip("/"),
            "org": invite_code.org_id,
            "device": key.verify_key.key_id,
            "role": str(invite.role),
            "name": "",
            "label": label,
            "created": int(time.time()),
        }
        Profile.create(
            path, secret, meta, roster, chain=chain, secret_passphrase=secret_passphrase
        ).close()
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


Notes = Annotated[list[str] | None, typer.Option("--note", help="A note (repeatable).")]
Attachments = Annotated[list[Path] | None, typer.Option("--attach", help="A file (repeatable).")]


@report_app.command("new")
def report_new(
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="KEY=VALUE (repeatable).")
    ] = None,
    note: Notes = None,
    attach: Attachments = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Write a new report; it is sealed into the outbox at once (no network needed)."""
    with _errors(as_json), _profile(home) as profile:
        content = ReportContent(
            client_time=int(time.time()),
            fields=_fields(field),
            notes=tuple(note or ()),
            attachments=tuple(seal_for_report(profile, p) for p in attach or ()),
        )
        report = secrets.token_bytes(16)
        revision = _seal(profile, report, content, ())
        data = {"report_id": report.hex(), "revision_id": revision.hex()}
        _out(as_json, data, lambda: sys.stdout.write(f"{report.hex()}\n"))


def _import_line(number: int, line: str) -> dict[str, str]:
    """One JSON-lines report: an object of text values (PROTOCOL §14.1), else Exit naming the line.

    Field values are text (or the deletion marker, meaningless in a new report): a number,
    a boolean, null, a list or an object is refused, not stored as some other text.
    """

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in items]
        twice = next((k for k in names if names.count(k) > 1), None)
        if twice is not None:
            raise ContentError(f"field {twice!r} is given twice")
        return dict(items)

    where = f"line {number}"
    try:
        raw = json.loads(line, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise Exit(Code.LOCAL, f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    except ContentError as exc:
        raise Exit(Code.LOCAL, f"{where}: {exc}") from None
    if not isinstance(raw, dict):
        raise Exit(Code.LOCAL, f"{where}: expected one JSON object {{field: text, ...}}")
    if not raw:
        raise Exit(Code.LOCAL, f"{where}: an empty object (a report needs at least one field)")
    kinds = {bool: "a boolean", int: "a number", float: "a number", type(None): "null",
             list: "a list", dict: "an object"}  # fmt: skip
    for name, value in raw.items():
        if not isinstance(value, str):
            raise Exit(
                Code.LOCAL,
                f"{where}: field {name!r} is {kinds.get(type(value), 'not text')}; field values"
                f' are text: write it in quotes ("{name}": "...")',
            )
        try:
            validate_field_name(name)
        except ContentError as exc:
            raise Exit(Code.LOCAL, f"{where}: {exc} ({name!r})") from None
    return raw


@report_app.command("import")
def report_import(
    source: Annotated[
        Path, typer.Argument(help="JSON lines, one {field: text} object per report.")
    ],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Seal many new reports from a JSON-lines file (one sealed revision each).

    All or nothing: a bad line (named by its number) seals none of the file.
    """
    with _errors(as_json), _profile(home) as profile:
        state = profile.device_state()
        roster, key = profile.roster, profile.signing_key
        ids: list[str] = []
        sealed: set[bytes] = set()
        try:
            with source.open(encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except UnicodeDecodeError:
            raise Exit(Code.LOCAL, f"{safe(source)}: not UTF-8 text") from None
        try:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                fields = _import_line(number, line)
                try:
                    content = ReportContent(client_time=int(time.time()), fields=fields)
                except ContentError as exc:
                    raise Exit(Code.LOCAL, f"line {number}: {exc}") from None
                report = secrets.token_bytes(16)
                envelope = seal_edit(
                    state, roster=roster, signing_key=key, report=report, content=content,
                    parents=(),
                )  # fmt: skip
                ids.append(report.hex())
                sealed.add(envelope.id)
        except Exit as exc:
            raise Exit(exc.code, f"{safe(source)}, {exc}; nothing was sealed") from None
        _save_sealed(profile, state, sealed)
        _out(
            as_json,
            {"report_ids": ids},
            lambda: err.print(f"{plural(len(ids), 'report')} sealed into the outbox."),
        )


@report_app.command("edit")
def report_edit(
    report_id: Annotated[str, typer.Argument(help="Report id (or a unique prefix).")],
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="KEY=VALUE, or KEY! to delete.")
    ] = None,
    note: Notes = None,
    attach: Attachments = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Edit a report: changed fields become a new revision on top of the heads this device knows."""
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
            fields=_fields(field),
            notes=tuple(note or ()),
            attachments=tuple(seal_for_report(profile, p) for p in attach or ()),
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
        queued: list[dict[str, Any]] = [
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
            console().print(table)
            for r in rejected:
                err.print(
                    f"[yellow]refused by the server, kept aside:[/] seq {r['seq']}"
                    f" {shown(r['status'])}: {shown(r['detail'])}",
                    highlight=False,
                )

        _out(as_json, data, human)


# --- wipe and status --------------------------------------------------------------------------


def _when(stamp: object) -> str:
    if not isinstance(stamp, int):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


@app.command("wipe")
def wipe_command(
    panic: Annotated[
        bool,
        typer.Option(
            "--panic", help="No questions: crypto-shred at once (keys first, then the rest)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Crypto-shred this profile: no passphrase needed, well under a second, irreversible.

    Asks for confirmation on a terminal; --yes skips the question, --panic asks nothing
    and wipes at once.  Without a terminal, --yes or --panic is needed.
    """
    with _errors(as_json):
        path = _home(home)
        if not (path / "keyfile").exists() and not (path / "store.db").exists():
            # Never remove a directory that is not a profile (a mistyped --home).
            raise Exit(Code.LOCAL, f"no sealbox profile in {safe(path)}: nothing was wiped")
        if not (panic or yes):
            if not sys.stdin.isatty():
                raise Exit(
                    Code.LOCAL,
                    "refusing to wipe without confirmation: pass --yes (or --panic),"
                    " or run it in a terminal to be asked",
                )
            question = f"Destroy the profile in {safe(path)} for good? Its keys cannot be recovered"
            if not typer.confirm(question, default=False, err=True):
                raise Exit(Code.LOCAL, "not wiped")
        seconds = wipe(path)
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
            "receipts": profile.store.count("receipt"),
            "chain_seq": state.seq,
            "last_sync": profile.meta.get("last_sync"),
            "warnings": warnings,
            "findings": findings,
        }

        def human() -> None:
            last = data["last_sync"]
            lines = [
                f"device    {data['device_id']} ({data['role']}, {safe(data['label'])})",
                f"org       {data['org_id']} {safe(data['org_name'] or '')}",
                f"server    {data['server']}",
                f"roster    v{data['roster_version']} {format_fingerprint(roster.hash)}",
                f"outbox    {len(state.outbox)} waiting, {state.sent} sent,"
                f" {len(state.rejected)} refused",
                f"last sync {_when(last)}",
            ]
            sys.stdout.write("\n".join(lines) + "\n")
            for w in warnings + findings:
                err.print(f"[bold yellow]WARNING[/] {shown(w)}", highlight=False)

        _out(as_json, data, human)
