"""`sealbox rotate` and `sealbox rotations`: replace a device's keys (PROTOCOL §19.7).

A field device asks: `rotate` signs a request with its old and new keys and posts it; a
coordinator compares the new key's fingerprint with the device's holder, then applies it
with `rotations apply DEVICE` (a roster version adding the new key, revoking the old id at
its watermark); the device's next sync switches to the new key.

A coordinator rotates its signing and HPKE keys at once: it syncs, grants every epoch it can
open to its new HPKE key (signed with the old key), and publishes, signed with the old key,
the roster version that admits the new keys and revokes the old id at its watermark. The
profile then holds only the new keys; reports sealed before stay readable through the grant,
later ones are sealed to the new key.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from clients.local.profile import Profile
from clients.local.rotation import adopt_new_keys, pending_secrets
from clients.local.syncing import run_sync
from clients.local.transport import Transport
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
from clients.reference_cli.render import plural, progress
from sync.client import DEFAULT_BOUNDS, GrantsPosted, drive
from sync.client.rotation import (
    apply_rotation_flow,
    request_rotation_flow,
    rotate_coordinator_flow,
    rotations_flow,
)
from sync.roster import Role, format_fingerprint
from sync.rotation import conflicting

__all__ = ["rotate", "rotations_app"]


def rotate(home: Home = None, as_json: Json = False) -> None:
    """Replace this coordinator's signing and decryption keys (after a suspected compromise,
    or as hygiene): old reports stay readable, new ones are sealed to the new key."""
    with _errors(as_json), _profile(home) as profile:
        if profile.role is not Role.COORDINATOR:
            _request(profile, as_json)
            return
        with _transport(profile) as transport:
            summary: dict[str, Any] = {}
            with progress(quiet=True, transfer=False, console=err) as bar:
                run_sync(profile, transport, None, DEFAULT_BOUNDS.run_seconds, summary, bar)
            if profile.device_state().outbox:
                raise Exit(Code.LOCAL, "the outbox did not empty: sync again, then rotate")
            old = profile.device_id
            new = pending_secrets(profile)
            assert new.kem_key is not None
            posted: list[bytes] = []

            def keep(event: object) -> None:
                if isinstance(event, GrantsPosted):
                    posted.extend(event.documents)

            roster, grants = drive(
                rotate_coordinator_flow(
                    org_path=profile.org_path,
                    trusted=profile.roster,
                    view=profile.view(),
                    old_key=profile.signing_key,
                    new_key=new.signing_key,
                    new_kem=new.kem_key.public_key,
                    issued_at=int(time.time()),
                ),
                transport.send,
                keep,
            )
        adopt_new_keys(profile, roster, posted)
        data: dict[str, Any] = {
            "old_device_id": old.hex(),
            "device_id": profile.device_id.hex(),
            "roster_version": roster.roster.version,
            "granted_epochs": sum(len(g.entries) for g in grants),
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Rotated: device {data['old_device_id'][:12]} is now {data['device_id'][:12]}"
                f" (roster v{data['roster_version']}); {plural(data['granted_epochs'], 'epoch')}"
                " granted to the new key.",
                highlight=False,
            ),
        )


def _request(profile: Profile, as_json: bool) -> None:
    """A field device: sync, then post a rotation request signed by the old and new keys."""
    with _transport(profile) as transport:
        with progress(quiet=True, transfer=False, console=err) as bar:
            run_sync(profile, transport, None, DEFAULT_BOUNDS.run_seconds, {}, bar)
        new = pending_secrets(profile)
        request = drive(
            request_rotation_flow(
                org_path=profile.org_path,
                org_id=profile.org_id,
                old_key=profile.signing_key,
                new_key=new.signing_key,
            ),
            transport.send,
        )
    data = {
        "device_id": profile.device_id.hex(),
        "new_device_id": request.new_device.hex(),
        "fingerprint": format_fingerprint(request.new_device),
    }
    _out(
        as_json,
        data,
        lambda: err.print(
            f"Asked to replace this device's key. A coordinator must apply it: read them this"
            f" fingerprint to compare: {data['fingerprint']}. Keep syncing; the device switches"
            " to the new key once the coordinator has applied it.",
            highlight=False,
        ),
    )


rotations_app = typer.Typer(help="Devices' key rotation requests (coordinators).")


def _waiting(profile: Profile, transport: Transport) -> tuple[list[Any], list[str]]:
    return drive(rotations_flow(org_path=profile.org_path, trusted=profile.roster), transport.send)


@rotations_app.command("list")
def rotations_list(home: Home = None, as_json: Json = False) -> None:
    """Rotation requests waiting for a coordinator, with the new keys' fingerprints."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _transport(profile) as transport:
            waiting, refused = _waiting(profile, transport)
        clash = conflicting([r for r, _ in waiting])
        data: dict[str, Any] = {
            "rotations": [
                {
                    "device_id": r.old_device.hex(),
                    "new_device_id": r.new_device.hex(),
                    "fingerprint": format_fingerprint(r.new_device),
                    "received_at": t,
                    "conflicting": r.old_device in clash,
                }
                for r, t in waiting
            ],
            "refused": refused,
        }

        def human() -> None:
            for r in data["rotations"]:
                flag = "  CONFLICTING: apply none" if r["conflicting"] else ""
                err.print(f"{r['device_id'][:12]} -> {r['fingerprint']}{flag}", highlight=False)
            for reason in refused:
                err.print(f"[bold red]WARNING[/] refused rotation request: {reason}")

        _out(as_json, data, human)


@rotations_app.command("apply")
def rotations_apply(
    device_id: Annotated[str, typer.Argument(help="The device's current id (or a prefix).")],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Apply a device's rotation request: its new key joins, its old id is revoked."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        with _transport(profile) as transport:
            waiting, _ = _waiting(profile, transport)
            requests = [r for r, _ in waiting]
            olds = {r.old_device for r in requests if r.old_device.hex().startswith(device_id)}
            if len(olds) != 1:
                raise Exit(Code.LOCAL, f"no single rotation request matches {device_id!r}")
            old = olds.pop()
            try:
                roster = drive(
                    apply_rotation_flow(
                        org_path=profile.org_path,
                        trusted=profile.roster,
                        signing_key=profile.signing_key,
                        requests=requests,
                        old_device=old,
                    ),
                    transport.send,
                )
            except ValueError as exc:
                raise Exit(Code.LOCAL, str(exc)) from None
        profile.set_roster(roster)
        new = next(r.new_device for r in requests if r.old_device == old)
        data = {
            "device_id": old.hex(),
            "new_device_id": new.hex(),
            "roster_version": roster.roster.version,
        }
        _out(
            as_json,
            data,
            lambda: err.print(
                f"Device {old.hex()[:12]} now signs as {new.hex()[:12]}"
                f" (roster v{roster.roster.version}).",
                highlight=False,
            ),
        )
