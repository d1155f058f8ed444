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

import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.desk.command import desk
from clients.local import freshness
from clients.local.store import wipe
from clients.reference_cli.attachment_commands import attachments_app
from clients.reference_cli.carry_commands import import_command, outbox_app, relay_app
from clients.reference_cli.checkpoint_command import checkpoint_app
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _home,
    _out,
    _profile,
    _when,
    err,
    os_message,
    set_global_home,
    stdout_broken,
)
from clients.reference_cli.coordinator import conflicts_app, reports_app
from clients.reference_cli.device_commands import devices_app
from clients.reference_cli.evidence_commands import evidence_app
from clients.reference_cli.grant_commands import grant, grants_lines, grants_list, grants_summary
from clients.reference_cli.invite_commands import invites_app
from clients.reference_cli.org_commands import enroll, invite_app, org_app
from clients.reference_cli.passphrase_commands import passphrase_app
from clients.reference_cli.recovery_commands import recovery_app
from clients.reference_cli.render import console, safe, shown
from clients.reference_cli.report_commands import report_app
from clients.reference_cli.rotation_commands import rotate, rotations_app
from clients.reference_cli.sync_command import sync
from sync.roster import Role, format_fingerprint


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
app.command()(sync)
app.command()(enroll)
app.command()(desk)
app.command()(grant)
app.command("grants")(grants_list)
app.command()(rotate)
app.add_typer(rotations_app, name="rotations")
app.add_typer(org_app, name="org")
app.add_typer(invite_app, name="invite")
app.add_typer(invites_app, name="invites")
app.add_typer(passphrase_app, name="passphrase")
app.add_typer(report_app, name="report")
app.add_typer(reports_app, name="reports")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(devices_app, name="devices")
app.add_typer(attachments_app, name="attachments")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(evidence_app, name="evidence")
app.add_typer(recovery_app, name="recovery")
app.add_typer(outbox_app, name="outbox")
app.add_typer(relay_app, name="relay")
app.command("import")(import_command)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version  # ~50 ms: not at start-up

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


@outbox_app.callback()
def outbox(ctx: typer.Context, home: Home = None, as_json: Json = False) -> None:
    """What waits to be sent (and anything the server refused, kept aside)."""
    if ctx.invoked_subcommand is not None:
        return
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
        warnings += freshness.status_warnings(profile)  # PROTOCOL §18.3
        me = roster.roster.member(profile.device_id)
        if me is None:
            warnings.append(
                "this device is enrolled but not yet admitted into the roster by a coordinator"
            )
        elif me.revoked_after is not None:
            warnings.append("this device is REVOKED")
        findings: list[str] = []
        grants: dict[str, Any] = {}
        if profile.role is Role.COORDINATOR:
            view = profile.view()
            findings = [f.text() for f in view.findings()]
            grants = grants_summary(view)
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
            "relay_queue": profile.store.count("relay"),
            "carried_not_in_feed": profile.store.count("carried"),  # §23.4
            "chain_seq": state.seq,
            "last_sync": profile.meta.get("last_sync"),
            "warnings": warnings,
            "findings": findings,
            "grants": grants,
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
            lines += grants_lines(grants)
            sys.stdout.write("\n".join(lines) + "\n")
            for w in warnings + findings:
                err.print(f"[bold yellow]WARNING[/] {shown(w)}", highlight=False)

        _out(as_json, data, human)
