"""`sealbox recovery setup|restore`: the organisation's k-of-n recovery key (PROTOCOL §20).

`setup` (a coordinator) draws a master secret, derives the recovery key, signs the roster
version that carries it and splits the secret into SLIP-39 shares, one sheet per trustee
(the words, a QR code of them, and the recovery locator).  With ``--out`` the sheets are
written before the version is posted, so a failure leaves no key without its shares.  The
secret itself is never written anywhere: once the sheets are out, only k trustees together
can rebuild it.

`restore` (on a new machine) rebuilds the secret from k shares, checks the organisation's
roster carries that recovery key, creates a new coordinator profile admitted by a version
the recovery key signs (revoking lost coordinators with ``--revoke``), and keeps the
recovery HPKE key in the new key file so that `sealbox sync` reads the whole archive.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from clients.local.profile import Profile
from clients.local.store import Secrets, StoreError
from clients.local.syncing import run_sync
from clients.local.transport import NetworkError, Transport
from clients.reference_cli.common import (
    Code,
    Exit,
    Home,
    Json,
    _errors,
    _home,
    _out,
    _profile,
    _require_coordinator,
    _transport,
    err,
)
from clients.reference_cli.render import progress
from crypto.recovery import RecoveryKey, combine_shares, split_master_secret
from sync.client import (
    DEFAULT_BOUNDS,
    RosterVerified,
    ServerMisbehaved,
    SyncRefused,
    drive,
    roster_flow,
)
from sync.client.recovery import restore_flow, setup_flow, setup_version
from sync.recovery import RecoveryLocator, public_key
from sync.roster import Member, Role, format_fingerprint

recovery_app = typer.Typer(
    help="The organisation's recovery key, split among trustees.", no_args_is_help=True
)


def _sheet(number: int, total: int, threshold: int, share: str, locator: str) -> str:
    words = share.split()
    rows = [
        "  ".join(f"{i + 1:>2} {w:<10}" for i, w in enumerate(words[j : j + 4], start=j))
        for j in range(0, len(words), 4)
    ]
    return "\n".join(
        [
            f"SEALBOX RECOVERY SHARE {number} of {total} ({threshold} needed to restore)",
            "",
            *rows,
            "",
            "Recovery locator (not secret; needed to restore):",
            locator,
            "",
            "Keep this sheet hidden and apart from the other shares. To restore, bring",
            f"{threshold} shares to a new machine and run `sealbox recovery restore`.",
        ]
    )


def _write_sheets(out: Path, sheets: list[tuple[str, str]]) -> list[str]:
    import segno

    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    if any(out.iterdir()):
        raise Exit(Code.LOCAL, f"{out} is not empty: give an empty or new directory")
    written = []
    for number, (sheet, share) in enumerate(sheets, start=1):
        text = out / f"trustee-{number}.txt"
        text.touch(mode=0o600)
        text.write_text(sheet + "\n", encoding="utf-8")
        qr = out / f"trustee-{number}.svg"
        qr.touch(mode=0o600)
        segno.make(share, error="m").save(str(qr), scale=4)
        written += [str(text), str(qr)]
    return written


@recovery_app.command("setup")
def recovery_setup(
    threshold: Annotated[int, typer.Option(min=2, max=16, help="Shares needed to restore.")] = 3,
    shares: Annotated[int, typer.Option(min=2, max=16, help="Shares made, one per trustee.")] = 5,
    out: Annotated[
        Path | None,
        typer.Option(help="Write one sheet per trustee here (text and QR), to print."),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Set up the recovery key: a roster version carrying it, and k-of-n trustee shares."""
    with _errors(as_json), _profile(home) as profile:
        _require_coordinator(profile)
        if threshold > shares:
            raise Exit(Code.USAGE, "--threshold cannot exceed --shares")
        transport = _transport(profile)

        def adopt(event: object) -> None:
            if isinstance(event, RosterVerified):
                for version in event.fresh:
                    profile.set_roster(version)

        try:
            trusted = drive(
                roster_flow(org_path=profile.org_path, trusted=profile.roster),
                transport.send,
                adopt,
            ).roster
            master = RecoveryKey.new_master_secret()
            recovery = RecoveryKey.derive(master, profile.org_id)
            split = split_master_secret(master, threshold=threshold, shares=shares)
            new = setup_version(
                trusted, signing_key=profile.signing_key, recovery=public_key(recovery)
            )
            locator = RecoveryLocator(profile.server_url, profile.org_id, new.hash).encode()
            sheets = [
                (_sheet(n, shares, threshold, share, locator), share)
                for n, share in enumerate(split, start=1)
            ]
            # The sheets exist before the key is installed: a failure here installs nothing,
            # and a key installed without its shares could never be replaced (R7).
            written = _write_sheets(out, sheets) if out is not None else []
            try:
                drive(setup_flow(org_path=profile.org_path, candidate=new), transport.send)
            except SyncRefused:
                for name in written:  # void: the server refused, their key was not installed
                    Path(name).unlink(missing_ok=True)
                raise
            except NetworkError as exc:
                raise Exit(
                    Code.NETWORK,
                    f"{exc}; the setup may or may not have reached the server: keep the"
                    " sheets, run `sealbox sync`: they are valid if `sealbox status` shows"
                    f" roster v{new.roster.version} {format_fingerprint(new.hash)}, else void",
                ) from None
        finally:
            transport.close()
        try:
            profile.set_roster(new)
        except (StoreError, sqlite3.Error, OSError):
            err.print("[yellow]note:[/] this profile could not record the new roster version;")
            err.print("its next `sealbox sync` fetches it. The shares below are valid.")
        # Epochs sealed before this version are not sealed to the recovery key: a sync
        # grants them to it (§20.3), as every later sync does for epochs that arrive late.
        granted = _grant_to_recovery(profile)
        data: dict[str, Any] = {
            "threshold": threshold,
            "shares": split if out is None else [],
            "files": written,
            "locator": locator,
            "roster_version": new.roster.version,
            "recovery_key_id": recovery.signing_key.verify_key.key_id.hex(),
            "granted_epochs": granted,
        }

        def human() -> None:
            if out is None:
                import segno

                for sheet, share in sheets:
                    sys.stdout.write(sheet + "\n\n")
                    segno.make(share, error="m").terminal(compact=True)
                    sys.stdout.write("\f\n")
            else:
                err.print(f"Wrote {len(sheets)} trustee sheets to {out}: print, then wipe them.")
            err.print(
                f"Recovery key set up (roster v{new.roster.version}"
                f" {format_fingerprint(new.hash)}): any {threshold} of {shares} shares restore."
            )
            if granted is None:
                err.print(
                    "[yellow]note:[/] the epochs sealed before this setup are not granted to"
                    " the recovery key yet: run `sealbox sync` (PROTOCOL §20.3)"
                )
            elif granted:
                err.print(
                    f"Granted {granted} epoch(s) sealed before this setup to the recovery key."
                )

        _out(as_json, data, human)


def _grant_to_recovery(profile: Profile) -> int | None:
    """Sync once, which grants the recovery key the epochs this coordinator holds that are
    not sealed to it (§20.3); how many, or None if the sync did not complete."""
    summary: dict[str, Any] = {}
    transport = _transport(profile)
    try:
        with progress(quiet=True, transfer=False, console=err) as bar:
            run_sync(profile, transport, None, DEFAULT_BOUNDS.run_seconds, summary, bar)
    except (NetworkError, SyncRefused, ServerMisbehaved):
        return None  # the setup stands; the next sync grants
    finally:
        transport.close()
    return int(summary.get("granted", 0))


def _read_shares(path: Path | None) -> list[str]:
    if path is not None:
        text = path.read_text(encoding="utf-8")
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        lines: list[str] = []
        err.print("Type one share per line (its words, in order); an empty line ends.")
        while True:
            line = typer.prompt(f"Share {len(lines) + 1}", default="", show_default=False)
            if not line.strip():
                break
            lines.append(line)
        text = "\n".join(lines)
    return [line for line in text.splitlines() if line.strip()]


@recovery_app.command("restore")
def recovery_restore(
    locator: Annotated[str, typer.Option(help="The sbr1: recovery locator on the sheets.")],
    shares_file: Annotated[
        Path | None,
        typer.Option(help="A file with one share per line (else standard input, or asked)."),
    ] = None,
    revoke: Annotated[
        list[str] | None,
        typer.Option(help="Revoke this lost device (id or unique prefix); repeatable."),
    ] = None,
    label: Annotated[str, typer.Option(help="A name for this device.")] = "restored coordinator",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Restore a coordinator on this machine from k trustee shares."""
    with _errors(as_json):
        path = _home(home)
        where = RecoveryLocator.decode(locator)
        master = combine_shares(_read_shares(shares_file))
        recovery = RecoveryKey.derive(master, where.org_id)
        secret_passphrase = Profile.prepare(path)
        fresh = Secrets.generate(coordinator=True)
        secret = Secrets(
            fresh.signing_seed,
            fresh.store_key,
            fresh.kem_seed,
            recovery.kem_key.private_bytes(),
        )
        key, kem = secret.signing_key, secret.kem_key
        assert kem is not None
        me = Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)
        transport = Transport(where.server_url, signing_key=recovery.signing_key)
        try:
            restored = drive(
                restore_flow(locator=where, recovery=recovery, newcomer=me, revoke=revoke or []),
                transport.send,
            )
        except SyncRefused as exc:
            if exc.status == 401:
                raise Exit(
                    Code.REFUSED,
                    "the server does not know this recovery key: these shares are of another"
                    " organisation or an earlier setup, or its recovery key was replaced",
                ) from None
            raise
        except LookupError as exc:
            raise Exit(Code.LOCAL, f"{exc}: nothing was changed") from None
        finally:
            transport.close()
        meta = {
            "server": where.server_url.rstrip("/"),
            "org": where.org_id,
            "device": key.verify_key.key_id,
            "role": str(Role.COORDINATOR),
            "name": "",
            "label": label,
            "created": int(time.time()),
            "restored": True,
        }
        Profile.create(
            path,
            secret,
            meta,
            restored.roster,
            chain=list(restored.chain[:-1]),
            secret_passphrase=secret_passphrase,
        ).close()
        data = {
            "device_id": key.verify_key.key_id.hex(),
            "org_id": where.org_id.hex(),
            "roster_version": restored.roster.roster.version,
            "revoked": [{"device_id": d.hex(), "revoked_after": n} for d, n in restored.revoked],
        }

        def human() -> None:
            err.print(
                f"Restored: this device is a coordinator (roster v{data['roster_version']}"
                f" {format_fingerprint(restored.roster.hash)}).\n  device id {data['device_id']}"
            )
            for device_id, after in restored.revoked:
                err.print(f"  revoked   {device_id.hex()} after its seq {after}")
            err.print("Run `sealbox sync` to fetch and read the archive.")

        _out(as_json, data, human)
