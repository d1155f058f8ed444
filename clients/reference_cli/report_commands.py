"""`sealbox report new|import|edit`: write reports, sealed into the outbox at once (offline)."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from clients.local.sealing import save_sealed as _save_sealed
from clients.local.sealing import seal_revision as _seal
from clients.reference_cli.attachments import seal_for_report
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _fields,
    _out,
    _profile,
    _resolve_report,
    err,
)
from clients.reference_cli.render import plural, safe
from sync.client import seal_edit
from sync.report import ContentError, ReportContent, validate_field_name
from sync.roster import Role

report_app = typer.Typer(help="Write reports (works offline).", no_args_is_help=True)

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
