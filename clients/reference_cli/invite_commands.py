"""`sealbox invites list|cancel` (coordinators): what became of each invite, and cancelling one.

An unused invite is a live way into the organisation until it expires (up to 30 days):
whoever holds its code can enroll.  `invites cancel` makes the server refuse it and this
profile (and any coordinator that reads the cancellation) never admit a device enrolled
with it (PROTOCOL §6.7).  The functions are `clients.local.invites`, shared with the Desk.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from clients.local import invites
from clients.local.transport import NetworkError
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
    _when,
    err,
)
from clients.reference_cli.org_commands import invite_create
from clients.reference_cli.render import cell, console
from sync.client import ServerMisbehaved, SyncRefused

invites_app = typer.Typer(help="Invites for new devices (coordinators).", no_args_is_help=True)
invites_app.command("create")(invite_create)


@invites_app.command("list")
def invites_list(home: Home = None, as_json: Json = False) -> None:
    """Every invite: created (still usable), used, expired or cancelled."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _transport(profile) as transport:
            rows = invites.list_invites(profile, transport, now=int(time.time()))
        data = [r.to_json() for r in rows]

        def human() -> None:
            table = Table("invite", "role", "state", "expires", "by", "used by")
            for r in rows:
                state = str(r.state)
                if not r.on_server:
                    state += " (not on the server)"
                elif str(r.state) == "cancelled" and not r.cancel_sent:
                    state += " (here only: run cancel again)"
                table.add_row(
                    r.invite_id.hex(),
                    cell(r.role),
                    cell(state),
                    _when(r.expires_at),
                    "this device" if r.mine else "another coordinator",
                    r.used_by.hex()[:12] if r.used_by else "-",
                )
            console().print(table)
            created = sum(1 for r in rows if str(r.state) == "created")
            if created:
                err.print(
                    f"{created} invite(s) can still enroll whoever holds the code:"
                    " `sealbox invites cancel ID` any you did not hand out."
                )

        _out(as_json, data, human)


@invites_app.command("cancel")
def invites_cancel(
    invite_id: Annotated[str, typer.Argument(help="Invite id (hex, or a unique prefix).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Cancel an invite: the server refuses it and no coordinator admits a device with it."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _transport(profile) as transport:
            prefix = invite_id.strip().lower()
            # This profile's own invites first: one of them is cancelled here even when the
            # server cannot be reached; another coordinator's is found in the server's list.
            mine = [bytes.fromhex(n) for n, _ in profile.store.items("invite")]
            matches = [i for i in mine if i.hex().startswith(prefix)] if prefix else []
            if len(matches) != 1 and prefix:
                known = {r.invite_id for r in invites.list_invites(profile, transport)}
                matches = [i for i in known if i.hex().startswith(prefix)]
            if len(matches) != 1:
                raise Exit(
                    Code.LOCAL,
                    f"no single invite matches {invite_id!r} (see `sealbox invites list`)",
                )
            try:
                done = invites.cancel_invite(profile, transport, matches[0])
            except (SyncRefused, NetworkError, ServerMisbehaved):
                err.print(
                    "[yellow]The invite is cancelled on this device, but the server was not"
                    " told: run this command again.[/]",
                    highlight=False,
                )
                raise
        data = {
            "invite_id": done.invite_id.hex(),
            "cancelled": True,
            "used_by": done.used_by.hex() if done.used_by else None,
            "used_by_admitted": done.admitted,
        }

        def human() -> None:
            err.print(f"Invite {done.invite_id.hex()} cancelled: it enrolls no one from now on.")
            if done.used_by is not None:
                device = done.used_by.hex()
                what = (
                    f"is already admitted: revoke it with `sealbox devices revoke {device[:12]}`"
                    if done.admitted
                    else "will not be admitted"
                )
                err.print(
                    f"[yellow]Device {device} had already enrolled with it and {what}.[/]",
                    highlight=False,
                )

        _out(as_json, data, human)
