"""Shared pieces of the `sealbox` commands: options, output, errors, profile access, sealing."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from clients.reference_cli.profile import Profile, default_home
from clients.reference_cli.store import StoreError
from clients.reference_cli.transport import NetworkError, Transport
from sync.client import (
    CoordinatorView,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    expect,
    seal_edit,
)
from sync.invite import InviteError
from sync.report import ContentError, ReportContent
from sync.roster import Role, RosterError

Home = Annotated[
    Path | None, typer.Option("--home", help="Profile directory (default: $SEALBOX_HOME).")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
err = Console(stderr=True)


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _home(home: Path | None) -> Path:
    return (home or default_home()).expanduser()


def _out(as_json: bool, data: Any, human: Callable[[], object]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        human()


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Map every expected failure to a clear message and exit code."""
    code, message = 0, ""
    try:
        yield
    except Exit as exc:
        code, message = exc.code, str(exc)
    except StoreError as exc:
        code, message = 1, str(exc)
    except (ContentError, InviteError, ValueError) as exc:
        code, message = 1, str(exc)
    except SyncRefused as exc:
        code, message = 3, _explain_refusal(exc)
    except NetworkError as exc:
        code, message = 4, str(exc)
    except (ServerMisbehaved, RosterError) as exc:
        code, message = (
            5,
            f"SERVER MISBEHAVED: {exc}. Nothing was trusted and nothing queued was lost.",
        )
    if code:
        if as_json:
            sys.stdout.write(json.dumps({"error": message, "exit_code": code}) + "\n")
        err.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(code)


def _explain_refusal(exc: SyncRefused) -> str:
    hints = {
        "device_revoked": "this device has been revoked by a coordinator; it can no longer sync. "
        "Queued reports were kept on this device.",
        "invite_unusable": "the invite is expired, already used or wrong; "
        "ask a coordinator for a new one",
        "admin_token_invalid": "the admin token is missing or wrong (set SEALBOX_ADMIN_TOKEN)",
        "admin_token_unset": "the server operator has not enabled organisation creation",
        "forbidden": "this device's role may not do that",
        "unknown_org": "the server does not know this organisation (or this device)",
    }
    hint = hints.get(exc.code or "")
    return f"{hint} ({exc.detail})" if hint else str(exc)


@contextmanager
def _profile(home: Path | None) -> Iterator[Profile]:
    profile = Profile.open(_home(home))
    try:
        yield profile
    finally:
        profile.close()


def _transport(profile: Profile | None, url: str | None = None, **kw: Any) -> Transport:
    base = url or (profile.server_url if profile else "")
    return Transport(base, signing_key=profile.signing_key if profile else None, **kw)


def _require_coordinator(profile: Profile) -> None:
    if profile.role is not Role.COORDINATOR:
        raise Exit(1, "only coordinators can do this (field devices cannot read reports)")


def _parse_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if not match:
        raise Exit(1, "durations look like 30m, 24h or 7d")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _call(transport: Transport, request: Request, *, bearer: str | None = None) -> Response:
    """Send one request; its answer if 200/201, else the server's refusal."""
    return expect(transport.send(request, bearer=bearer), 200, 201)


# --- writing reports --------------------------------------------------------------------------


def _seal(
    profile: Profile, report: bytes, content: ReportContent, parents: tuple[bytes, ...] | None
) -> bytes:
    state = profile.device_state()
    envelope = seal_edit(
        state,
        roster=profile.roster,
        signing_key=profile.signing_key,
        report=report,
        content=content,
        parents=parents,
    )
    with profile.store.transaction():
        profile.save_device(state)
        if profile.role is Role.COORDINATOR:
            # A coordinator seals to itself too: keep its own revisions readable at once.
            profile.keep_envelopes(
                [i.data for i in state.outbox if i.envelope_id == envelope.id or i.report is None]
            )
    return envelope.id


def _resolve_report(view: CoordinatorView | None, profile: Profile, prefix: str) -> bytes:
    candidates = set(profile.device_state().heads)
    if view is not None:
        candidates |= set(view.reports())
    matches = [r for r in candidates if r.hex().startswith(prefix.lower())]
    if len(matches) != 1:
        raise Exit(1, f"no single report matches {prefix!r}")
    return matches[0]
