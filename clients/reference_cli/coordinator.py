"""Coordinator commands: merged reports and conflicts (devices are in `device_commands`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clients.local.export import export_csv as _export_csv
from clients.local.export import export_json as _export_json
from clients.local.index import Index
from clients.local.profile import Profile
from clients.local.sealing import seal_revision as _seal
from clients.reference_cli.attachments import attachment_state
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _fields,
    _out,
    _profile,
    _require_coordinator,
    _resolve_report,
    err,
)
from clients.reference_cli.render import cell, console, plural, safe, shown
from sync.client import CoordinatorView, Finding, ReportVerification
from sync.merge import ReportState
from sync.report import DELETED, ReportContent

reports_app = typer.Typer(help="Read merged reports (coordinators).", no_args_is_help=True)
conflicts_app = typer.Typer(
    help="Concurrent edits of one field (coordinators).", no_args_is_help=True
)

# --- reading (coordinators) -------------------------------------------------------------------


def _value_text(value: Any) -> str:
    return "(deleted)" if value is DELETED else safe(value)


def _state_lines(
    state: ReportState, verification: ReportVerification, states: dict[bytes, str] | None = None
) -> list[str]:
    lines = [
        f"report {state.report.hex()}  ({plural(state.revision_count, 'revision')},"
        f" {plural(len(state.heads), 'head')})",
        f"  verification: {verification.state}"
        + (f" ({safe('; '.join(verification.reasons))})" if verification.reasons else ""),
    ]
    for f in state.fields:
        if f.conflict:
            lines.append(f"  {safe(f.name)}: CONFLICT")
            for w in f.writes:
                when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(w.client_time))
                lines.append(
                    f"      - {_value_text(w.value)}  by {w.author.hex()[:12]}"
                    f" at {when} UTC (client clock)"
                )
        else:
            lines.append(f"  {safe(f.name)}: {_value_text(f.writes[0].value)}")
    for n in state.notes:
        lines.append(f"  note by {n.author.hex()[:12]}: {safe(n.text)}")
    for a in state.attachments:
        lines.append(
            f"  attachment {safe(a.name)} ({plural(a.size, 'byte')}, {safe(a.media_type)},"
            f" sha256 {a.sha256.hex()[:16]}...)" + (f" {states[a.attachment_id]}" if states else "")
        )
    if state.missing:
        lines.append(f"  WARNING {plural(len(state.missing), 'parent revision')} not seen yet")
    return lines


def _coordinator_view(profile: Profile) -> CoordinatorView:
    _require_coordinator(profile)
    view = profile.view()
    _warn(view.findings())
    return view


def _coordinator_index(profile: Profile) -> Index:
    """The encrypted index (verified once, then read without verifying again)."""
    _require_coordinator(profile)
    index = profile.index()
    _warn(index.findings())
    return index


def _warn(findings: list[Finding]) -> None:
    for finding in findings:
        err.print(f"[bold red]WARNING[/] {shown(finding.text())}", highlight=False)


@reports_app.command("list")
def reports_list(home: Home = None, as_json: Json = False) -> None:
    """Every report, merged, with conflicts counted."""
    with _errors(as_json), _profile(home) as profile:
        index = _coordinator_index(profile)
        states = index.reports()
        data: list[dict[str, Any]] = [
            {
                "report_id": r.hex(),
                "verification": index.verification(r).state,
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
            table = Table("report", "verification", "revisions", "conflicts", "fields")
            for d in data:
                summary = ", ".join(
                    f"{k}="
                    + ("(conflict)" if v is None else "(deleted)" if isinstance(v, dict) else v)
                    for k, v in list(d["fields"].items())[:3]
                )
                table.add_row(
                    d["report_id"][:12],
                    cell(d["verification"]),
                    str(d["revisions"]),
                    cell(", ".join(d["conflicts"]) or "-"),
                    cell(summary),
                )
            console().print(table)

        _out(as_json, data, human)


def _from_json(value: Any) -> Any:
    return DELETED if isinstance(value, dict) else value


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
        index = _coordinator_index(profile)
        report = _resolve_report(index, profile, report_id)
        found = index.state(report)
        if found is None:
            raise Exit(1, "this report has no readable revision yet (sync first)")
        state, verification = found
        # Upload states as of the last sync (PROTOCOL §13.5): "pending" until complete.
        states = {a.attachment_id: attachment_state(profile, a.attachment_id)["state"]
                  for a in state.attachments}  # fmt: skip
        data = state.to_json()
        data["verification"] = {"state": verification.state, "reasons": list(verification.reasons)}
        for entry in data["attachments"]:
            entry["state"] = states[bytes.fromhex(entry["id"])]
        _out(
            as_json,
            data,
            lambda: sys.stdout.write("\n".join(_state_lines(state, verification, states)) + "\n"),
        )


@reports_app.command("export")
def reports_export(
    format: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default: stdout).")
    ] = None,
    include_unverified: Annotated[
        bool,
        typer.Option(
            "--include-unverified",
            help="Also export content not verified yet (devices pending admission), marked.",
        ),
    ] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Export merged reports (conflicts kept: one CSV row per surviving value).

    Only verified content by default: revisions from devices not yet admitted into the
    roster are left out unless --include-unverified, and every row names its report's
    verification state.
    """
    if format not in ("json", "csv"):
        raise typer.BadParameter("json or csv", param_hint="--format")
    with _errors(as_json), _profile(home) as profile:
        view = _coordinator_view(profile)
        states = view.reports(include_unverified=include_unverified)
        rows = [(s, view.verification(r)) for r, s in states.items()]
        left_out = set(view.reports()) - set(states)
        text = _export_json(rows) if format == "json" else _export_csv(rows)
        if output is None:
            sys.stdout.write(text)
        else:
            _write_private(output, text)
            err.print(
                f"{plural(len(rows), 'report')} written to {shown(output)}"
                " (plaintext: keep it safe).",
                highlight=False,
            )
        pending = sum(1 for _, v in rows if v.state == "pending-admission")
        if left_out:
            err.print(
                f"[yellow]{plural(len(left_out), 'report')} "
                + ("holds" if len(left_out) == 1 else "hold")
                + " only content not verified yet (pending admission), left out;"
                " --include-unverified exports it, marked.[/]",
                highlight=False,
            )
        elif not include_unverified and pending:
            err.print(
                f"[yellow]{plural(pending, 'report')} also "
                + ("holds" if pending == 1 else "hold")
                + " unverified revisions, left out of the export; --include-unverified"
                " exports them, marked.[/]",
                highlight=False,
            )


def _write_private(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` (mode 0600); on failure no partial file stays behind."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if output.is_file():
            output.unlink(missing_ok=True)
        if exc.filename is None:  # a write or close error names no file: name it
            raise OSError(exc.errno, exc.strerror, str(output)) from None
        raise


@conflicts_app.command("list")
def conflicts_list(home: Home = None, as_json: Json = False) -> None:
    """Fields with concurrent values, per report."""
    with _errors(as_json), _profile(home) as profile:
        index = _coordinator_index(profile)
        data: list[dict[str, Any]] = []
        for report, state in index.reports().items():
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
                sys.stdout.write(f"{d['report_id']} {safe(d['field'])}:\n")
                for v in d["values"]:
                    sys.stdout.write(
                        f"    {_value_text(_from_json(v['value']))} by {v['author'][:12]}\n"
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
        index = _coordinator_index(profile)
        report = _resolve_report(index, profile, report_id)
        found = index.state(report)
        if found is None:
            raise Exit(1, "this report has no readable revision yet (sync first)")
        state = found[0]
        choices = _fields(field)
        in_conflict = {f.name for f in state.conflicts}
        if not in_conflict:
            raise Exit(
                Code.LOCAL,
                f"report {report.hex()[:12]} has no conflict to resolve (nothing was written);"
                " use `sealbox report edit` to change a field",
            )
        others = sorted(set(choices) - in_conflict)
        if others:
            raise Exit(
                Code.LOCAL,
                f"field {others[0]!r} is not in conflict in this report (in conflict: "
                f"{', '.join(sorted(in_conflict))}); nothing was written",
            )
        content = ReportContent(client_time=int(time.time()), fields=choices, resolves=True)
        revision = _seal(profile, report, content, state.heads)
        remaining = [f.name for f in state.conflicts if f.name not in choices]
        data = {"report_id": report.hex(), "revision_id": revision.hex(), "unresolved": remaining}
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Resolved; still in conflict: {shown(', '.join(remaining)) or 'nothing'}."
                " Run `sealbox sync` to share it.",
                highlight=False,
            ),
        )
