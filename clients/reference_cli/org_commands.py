"""`sealbox org create`, `invite create`, `enroll`: making an organisation and joining one.

A new profile is prepared before anything is sent (`Profile.prepare`: a free,
writable home and the passphrase), so a failure there leaves no organisation or
used invite behind on the server.
"""

from __future__ import annotations

import secrets
import sys
import time
from typing import Annotated

import typer

from clients.local.profile import Profile
from clients.local.store import Secrets
from clients.local.transport import Transport
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _call,
    _errors,
    _home,
    _out,
    _parse_duration,
    _profile,
    _require_coordinator,
    _transport,
    _when,
    err,
    invite_lifetime,
    server_url,
)
from clients.reference_cli.render import shown
from crypto import VerifyKey
from sync.client import Request, SyncRefused, decode, verify_enrollment
from sync.invite import Enrollment, Invite, InviteCode, seal_label
from sync.messages import ServerInfo, b64encode
from sync.roster import Member, Role, Roster, format_fingerprint

org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
invite_app = typer.Typer(help="Invites for new devices (coordinators).", no_args_is_help=True)


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
        secret_passphrase = Profile.prepare(path, context=(name, label))
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
        with _transport(profile) as transport:
            _call(
                transport,
                Request(
                    "POST",
                    f"{profile.org_path}/invites",
                    {"invite": b64encode(document.to_bytes())},
                ),
            )
        profile.store.put_cbor(
            "invite",
            code.invite_id.hex(),
            {"secret": code.secret, "role": str(role), "expires_at": expires_at},
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
        secret_passphrase = Profile.prepare(path, context=(label,))
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
