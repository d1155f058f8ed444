"""`sealbox sync`: drive one `sync.client.sync_flow`, persist what its events name, render them.

The protocol rules live in `sync/client/`; this module only maps the profile's
records to `SyncInputs`, persists each event's facts in the local store, and prints.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clients.local.profile import Profile
from clients.local.syncing import run_sync
from clients.local.transport import Transport
from clients.reference_cli.common import Exit, Home, Json, _errors, _out, _profile, _transport, err
from clients.reference_cli.render import plural, shown
from clients.reference_cli.render import progress as render_progress
from sync.client import (
    DEFAULT_BOUNDS,
)


def sync(
    batch_size: Annotated[
        int | None, typer.Option(help="At most this many envelopes per request.")
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries per request on network errors.")] = 5,
    time_budget: Annotated[
        float, typer.Option(help="Stop pulling after this many seconds (resumed next time).")
    ] = DEFAULT_BOUNDS.run_seconds,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Push the outbox, keep receipts, purge what was received; coordinators also pull."""
    with _errors(as_json), _profile(home) as profile:
        transport = _transport(profile, retries=retries)
        summary: dict[str, Any] = {}
        try:
            _sync(profile, transport, batch_size, time_budget, summary, quiet=as_json)
        finally:
            summary["bytes_sent"] = transport.bytes_sent
            summary["bytes_received"] = transport.bytes_received
            summary["requests"] = transport.requests
            transport.close()
        _out(as_json, summary, lambda: err.print(_sync_text(summary), highlight=False))
        if summary.get("revoked"):
            raise Exit(
                3,
                "this device has been revoked by a coordinator; it can no longer sync."
                " Queued reports were kept.",
            )
        if summary.get("attachments_failed"):
            for reason in summary.get("attachments_errors", []):
                err.print(f"[bold red]error:[/] {shown(reason)}", highlight=False)
            err.print(
                f"[bold red]error:[/] {plural(summary['attachments_failed'], 'attachment')}"
                " failed to upload (kept queued; run `sealbox sync` again)"
            )
            raise typer.Exit(6)
        if summary.get("rejected"):
            err.print(
                f"[bold red]error:[/] the server refused {plural(summary['rejected'], 'envelope')};"
                " kept aside on this device (see `sealbox outbox`)."
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
    if s.get("relayed") or s.get("relay_queued"):
        lines.append(
            f"Relayed: {plural(s.get('relayed', 0), 'envelope')} of other devices,"
            f" {s.get('relay_queued', 0)} still to relay."
        )
    if "reports" in s:
        lines.append(
            f"Pulled: {plural(s['pulled'], 'new envelope')}; {plural(s['reports'], 'report')},"
            f" {s['conflicts']} with conflicts."
        )
    for warning in s.get("warnings", []):
        lines.append(f"[bold red]WARNING[/] {shown(warning)}")
    for finding in s.get("findings", []):
        lines.append(f"[bold red]WARNING[/] {shown(finding)}")
    for device in s.get("admitted", []):
        lines.append(f"Admitted device {device[:12]} into the roster.")
    if s.get("attachments_waiting"):
        lines.append(
            f"{plural(s['attachments_waiting'], 'attachment')} "
            + ("waits" if s["attachments_waiting"] == 1 else "wait")
            + " until a coordinator admits this device; uploads happen at a later sync"
            " (nothing is wrong)."
        )
    if s.get("attachments_uploaded"):
        lines.append(f"Uploaded {plural(s['attachments_uploaded'], 'attachment')}.")
    return "\n".join(lines)


def _sync(
    profile: Profile,
    transport: Transport,
    batch_size: int | None,
    time_budget: float,
    summary: dict[str, Any],
    *,
    quiet: bool,
) -> None:
    with render_progress(quiet=quiet, transfer=False, console=err) as progress:
        run_sync(profile, transport, batch_size, time_budget, summary, progress)
