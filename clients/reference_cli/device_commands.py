"""`sealbox devices list|revoke` (coordinators): enrolled devices, and revoking a seized one."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from clients.local.revocation import RevocationRefused, revoke_member
from clients.reference_cli.common import (
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
from clients.reference_cli.render import cell, console
from crypto import encoding
from sync.client import (
    devices_flow,
    drive,
)
from sync.invite import Enrollment, open_label

devices_app = typer.Typer(help="Enrolled devices (coordinators).", no_args_is_help=True)


def device_label(
    enrollment: bytes | None, device_id: bytes, invites: dict[bytes, Any]
) -> str | None:
    """The label a device sealed at enrollment, if this profile issued its invite (the
    secret opens it); None when it cannot be read (another coordinator's invite, damage)."""
    if not enrollment:
        return None
    try:
        parsed, _ = Enrollment.parse_and_verify(enrollment)
        known = invites.get(parsed.invite_id)
        if known is None:
            return None
        return open_label(
            parsed.sealed_label,
            secret=known["secret"],
            invite_id=parsed.invite_id,
            device_id=device_id,
        )
    except Exception:  # noqa: BLE001 - an unreadable label is shown as unknown
        return None


@devices_app.command("list")
def devices_list(home: Home = None, as_json: Json = False) -> None:
    """Enrolled devices with their role, state, chain watermark and flags."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _transport(profile) as transport:
            devices = drive(devices_flow(org_path=profile.org_path), transport.send)
        invites = {bytes.fromhex(n): encoding.decode(p) for n, p in profile.store.items("invite")}
        roster = profile.roster.roster
        data: list[dict[str, Any]] = []
        for d in devices.devices:
            device_id = d.device_id
            label = device_label(d.enrollment, device_id, invites)
            if device_id == profile.device_id:
                label = profile.meta.get("label")
            member = roster.member(device_id)
            data.append(
                {
                    "device_id": device_id.hex(),
                    "label": label,
                    "role": d.role,
                    "state": d.state,
                    "in_roster": member is not None,
                    "revoked_after": member.revoked_after if member else None,
                    "watermark": d.watermark,
                    "flags": list(d.flags),
                }
            )

        def human() -> None:
            table = Table("device", "label", "role", "state", "watermark", "flags")
            for x in data:
                table.add_row(
                    x["device_id"],
                    cell(x["label"] or "?"),
                    cell(x["role"]),
                    cell(x["state"]),
                    cell(x["watermark"]),
                    cell(", ".join(x["flags"]) or "-"),
                )
            console().print(table)

        _out(as_json, data, human)


@devices_app.command("revoke")
def devices_revoke(
    device_id: Annotated[str, typer.Argument(help="Device id (hex, or a unique prefix).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Revoke a device (seized, lost): a new signed roster version; later uploads are refused."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _transport(profile) as transport:
            try:
                done = revoke_member(profile, transport, device_id)
            except RevocationRefused as exc:
                raise Exit(1, str(exc)) from None
        data = {
            "device_id": done.device_id.hex(),
            "revoked_after": done.revoked_after,
            "roster_version": done.roster_version,
            "already_revoked": done.already_revoked,
        }
        if done.already_revoked:
            said = (
                f"Device {done.device_id.hex()} is already revoked (after its seq"
                f" {done.revoked_after}, roster v{done.roster_version}): nothing to do."
            )
        else:
            said = (
                f"Device {done.device_id.hex()} revoked after its seq {done.revoked_after}"
                f" (roster v{done.roster_version})."
            )
        _out(as_json, data, lambda: err.print(said))
