"""`sealbox devices list|revoke` (coordinators): enrolled devices, and revoking a seized one."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

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
    RosterVerified,
    devices_flow,
    drive,
    revoke_flow,
    roster_flow,
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
        transport = _transport(profile)
        try:
            devices = drive(devices_flow(org_path=profile.org_path), transport.send)
        finally:
            transport.close()
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
        transport = _transport(profile)

        def adopt(event: object) -> None:
            if isinstance(event, RosterVerified):
                for version in event.fresh:
                    profile.set_roster(version)

        roster = drive(
            roster_flow(org_path=profile.org_path, trusted=profile.roster), transport.send, adopt
        ).roster
        matches = [
            m.device_id
            for m in roster.roster.members
            if m.device_id.hex().startswith(device_id.lower())
        ]
        if len(matches) != 1:
            raise Exit(
                1,
                f"no single roster member matches {device_id!r}"
                " (a device is revocable once admitted: sync first)",
            )
        if matches[0] == profile.device_id:
            others = [m for m in roster.roster.active_coordinators() if m.device_id != matches[0]]
            if not others and roster.roster.recovery is None:
                raise Exit(
                    1,
                    "this is the last active coordinator: revoked, no one could read new"
                    " reports or admit a device; set up recovery first (`sealbox recovery"
                    " setup`) or admit another coordinator",
                )
        already = roster.roster.member(matches[0])
        if already is not None and already.revoked_after is not None:
            # Nothing to sign: the point could only move earlier, and no version is needed.
            data = {
                "device_id": matches[0].hex(),
                "revoked_after": already.revoked_after,
                "roster_version": roster.roster.version,
                "already_revoked": True,
            }
            _out(
                as_json,
                data,
                lambda: err.print(
                    f"Device {matches[0].hex()} is already revoked (after its seq"
                    f" {already.revoked_after}, roster v{roster.roster.version}): nothing to do."
                ),
            )
            return
        new = drive(
            revoke_flow(
                org_path=profile.org_path,
                trusted=roster,
                signing_key=profile.signing_key,
                device_id=matches[0],
            ),
            transport.send,
        )
        profile.set_roster(new)
        revoked = new.roster.member(matches[0])
        assert revoked is not None
        data = {
            "device_id": matches[0].hex(),
            "revoked_after": revoked.revoked_after,
            "roster_version": new.roster.version,
            "already_revoked": False,
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Device {matches[0].hex()} revoked after its seq {revoked.revoked_after}"
                f" (roster v{new.roster.version})."
            ),
        )
