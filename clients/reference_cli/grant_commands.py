"""`sealbox grant` and `sealbox grants`: history for coordinators (PROTOCOL §19).

A coordinator that admits another coordinator grants it, at that sync and at every later
one, the chain keys of the epochs it holds and the newcomer lacks. `grant --to DEVICE`
asks for the same on demand (`--from DATE`: only epochs whose key envelope this profile
first stored on or after DATE, UTC, by its own clock: headers carry no time). `grants`
shows the verified grant log: who granted which epochs to whom, and when.
"""

from __future__ import annotations

import calendar
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.local import grants as local_grants
from clients.local.syncing import run_sync
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _out,
    _profile,
    _require_coordinator,
    _transport,
    err,
)
from clients.reference_cli.render import console, plural, progress
from sync.client import DEFAULT_BOUNDS, CoordinatorView

__all__ = ["grant", "grants_lines", "grants_list", "grants_summary"]


def _date(text: str) -> int:
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%d"))
    except ValueError:
        raise typer.BadParameter("expected a date YYYY-MM-DD (UTC)") from None


def grant(
    to: Annotated[
        str, typer.Option("--to", help="The coordinator's device id (hex, or a unique prefix).")
    ],
    since: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Only epochs this profile first stored on or after this date (YYYY-MM-DD, UTC).",
        ),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Grant a coordinator the history this coordinator can read, now and at every sync."""
    start = _date(since) if since is not None else None
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        wanted = to.lower()
        members = [m.device_id for m in profile.roster.roster.members]
        matches = [d for d in members if d.hex().startswith(wanted)]
        if not matches and len(wanted) == 32:
            matches = [bytes.fromhex(wanted)]  # enrolled, not admitted yet: admission grants
        if len(matches) != 1:
            raise Exit(Code.LOCAL, f"no single roster member matches {to!r}")
        if matches[0] == profile.device_id:
            raise Exit(Code.LOCAL, "a coordinator holds its own keys: nothing to grant")
        local_grants.set_policy(profile, matches[0], start)
        summary: dict[str, Any] = {}
        with _transport(profile) as transport:
            with progress(quiet=True, transfer=False, console=err) as bar:
                run_sync(profile, transport, None, DEFAULT_BOUNDS.run_seconds, summary, bar)
        data = {
            "to": matches[0].hex(),
            "from": start,
            "granted_epochs": summary.get("granted", 0),
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Granted {plural(data['granted_epochs'], 'epoch')} to {data['to'][:12]};"
                " later ones it lacks are granted at every sync.",
                highlight=False,
            ),
        )


def grants_list(home: Home = None, as_json: Json = False) -> None:
    """The verified grant log: who granted which epochs to whom, and when (granter's clock)."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        view = profile.view()
        members = profile.roster.roster.members
        holder = {m.kem_key.key_id: m.device_id for m in members if m.kem_key is not None}
        rows: list[dict[str, Any]] = [
            {
                "grant_id": g.id.hex(),
                "granter": g.granter.hex(),
                "grantee_key": g.grantee.hex(),
                "grantee": holder[g.grantee].hex() if g.grantee in holder else None,
                "epochs": len(g.entries),
                "roster_version": g.roster_version,
                "issued_at": g.issued_at,
                "bytes": len(g.document),
            }
            for g in view.grants.log()
        ]
        refused = [f.text() for f in view.grants.findings()]
        data = {"grants": rows, "refused": refused}

        def human() -> None:
            table = Table("granted", "by", "to", "epochs", "bytes", title="Grants")
            for r in rows:
                when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["issued_at"]))
                table.add_row(
                    when,
                    r["granter"][:12],
                    (r["grantee"] or "key " + r["grantee_key"])[:16],
                    str(r["epochs"]),
                    str(r["bytes"]),
                )
            console().print(table)
            for line in refused:
                err.print(f"[bold red]WARNING[/] {line}", highlight=False)

        _out(as_json, data, human)


def grants_summary(view: CoordinatorView) -> dict[str, Any]:
    """For `status`: the grant log in brief, and the epochs no one can grant, said once."""
    me = view.kem_key.public_key.key_id
    rk = view.roster.roster.recovery
    recovery = rk.kem_key.key_id if rk is not None else None
    log = view.grants.log()
    lost = view.lost_epochs()
    return {
        "verified": len(log),
        "epochs_granted_to_me": len(view.grants.keys),
        "epochs_granted_by_me": sum(len(g.entries) for g in log if _mine(view, g.granter)),
        "refused": len(view.grants.refused),
        "lost_epochs": len(lost),
        "lost_revisions": sum(e.revisions for e in lost),
        "log": [
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(g.issued_at))} UTC:"
            f" {g.granter.hex()[:12]} granted {plural(len(g.entries), 'epoch')} to key"
            f" {g.grantee.hex()[:12]}" + _whose(g.grantee, me, recovery)
            for g in log[-5:]
        ],
    }


def _whose(grantee: bytes, me: bytes, recovery: bytes | None) -> str:
    if grantee == me:
        return " (this coordinator)"
    return " (the recovery key)" if grantee == recovery else ""


def _mine(view: CoordinatorView, granter: bytes) -> bool:
    member = view.roster.roster.member(granter)
    return member is not None and member.kem_key == view.kem_key.public_key


def grants_lines(summary: dict[str, Any]) -> list[str]:
    if not summary:
        return []
    lines = [
        f"grants    {summary['verified']} verified, keys of"
        f" {plural(summary['epochs_granted_to_me'], 'epoch')} granted to you,"
        f" {summary['refused']} refused (`sealbox grants`)"
    ]
    lines += [f"          {line}" for line in summary["log"]]
    if summary["lost_epochs"]:
        lines.append(
            f"unreadable {plural(summary['lost_revisions'], 'revision')} in"
            f" {plural(summary['lost_epochs'], 'epoch')} were sealed only to coordinators no"
            " longer in the roster, and no one still in it holds their keys: no grant can"
            " make them readable"
        )
    return lines
