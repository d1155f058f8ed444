"""Shared pieces of the `sealbox` commands: options, output, errors, profile access, sealing."""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from clients.local.index import Index
from clients.local.profile import Profile, default_home
from clients.local.store import StoreError
from clients.local.transport import NetworkError, Transport
from clients.reference_cli.render import console, safe, shown
from sync.client import (
    CoordinatorView,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    expect,
)
from sync.invite import InviteError
from sync.report import ContentError, FieldValue, parse_field_assignments
from sync.roster import Role, RosterError

Home = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Profile directory (default: $SEALBOX_HOME). Also accepted before the command.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
err = console(stderr=True)


class Code(IntEnum):
    """The exit codes of every `sealbox` command (listed in main.py's docstring and README)."""

    OK = 0
    LOCAL = 1
    """Local error: wrong passphrase, bad input, no profile, nothing to do."""
    USAGE = 2
    """Usage: an unknown option, a missing argument, a malformed option value."""
    REFUSED = 3
    """The server refused (revoked device, unusable invite, wrong admin token...)."""
    NETWORK = 4
    """The server is unreachable, or the connection dropped, after the retries."""
    MISBEHAVED = 5
    """The server misbehaved (rollback, forged or malformed data): nothing was trusted."""
    ATTACHMENT = 6
    """An attachment failed to upload or verify (it stays queued)."""
    FILES = 7
    """A local file or disk problem: a missing path, no permission, a full disk."""
    BUG = 70
    """An unexpected internal error: a bug in sealbox (SEALBOX_DEBUG=1 shows the traceback)."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C); the local store is left as it was before the interrupted step."""


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_global_home: list[Path | None] = [None]


def set_global_home(home: Path | None) -> None:
    """Record ``sealbox --home DIR COMMAND``: the home of commands not given their own."""
    _global_home[0] = home


def _home(home: Path | None) -> Path:
    return (home or _global_home[0] or default_home()).expanduser()


def _when(stamp: object) -> str:
    if not isinstance(stamp, int):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _out(as_json: bool, data: Any, human: Callable[[], object]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        human()


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and try again",
    errno.EDQUOT: "the disk quota is exhausted: free some space and try again",
    errno.EACCES: "choose a place this user may write, or fix the owner and mode",
    errno.EPERM: "choose a place this user may write, or fix the owner and mode",
    errno.EROFS: "the file system is read-only: choose another place",
}


def os_message(exc: OSError) -> str:
    """An OSError as one line: the path(s), the system's reason, and a hint (no traceback)."""
    where = ""
    if exc.filename is not None:
        where = f"{safe(os.fsdecode(exc.filename))}: "
        if exc.filename2 is not None:
            where = f"{where[:-2]} -> {safe(os.fsdecode(exc.filename2))}: "
    reason = exc.strerror or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{where}{reason}" + (f" ({hint})" if hint else "")


def stdout_broken() -> bool:
    """Whether standard output fails (a full disk, a closed pipe); if so, point it at /dev/null.

    The unwritten bytes would otherwise fail again when the interpreter exits
    ("Exception ignored ...", exit status 120) after the error was already reported.
    """
    try:
        sys.stdout.flush()
        return False
    except OSError:
        pass
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass
    return True


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Map every expected failure to a clear message and a documented exit code (`Code`)."""
    code, message = 0, ""
    try:
        yield
        sys.stdout.flush()  # a full disk or a closed pipe surfaces here, not at exit
    except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
        raise  # usage errors and explicit exits are Click's; a closed pipe ends quietly
    except Exit as exc:
        code, message = exc.code, str(exc)
    except StoreError as exc:
        code, message = Code.LOCAL, str(exc)
    except (ContentError, InviteError) as exc:
        code, message = Code.LOCAL, str(exc)
    except SyncRefused as exc:
        code, message = Code.REFUSED, _explain_refusal(exc)
    except NetworkError as exc:
        code, message = Code.NETWORK, str(exc)
    except (ServerMisbehaved, RosterError) as exc:
        code, message = (
            Code.MISBEHAVED,
            f"SERVER MISBEHAVED: {exc}. Nothing was trusted and nothing queued was lost.",
        )
    except OSError as exc:
        broken = exc.filename is None and stdout_broken()
        code, message = Code.FILES, ("standard output: " if broken else "") + os_message(exc)
    except sqlite3.Error as exc:
        code, message = (
            Code.FILES,
            f"the profile's local store cannot be used ({exc}): check the free space and"
            " the permissions of the profile directory (--home)",
        )
    except UnicodeError as exc:
        code, message = Code.LOCAL, f"not UTF-8 text ({exc.__class__.__name__})"
    except ValueError as exc:
        code, message = Code.LOCAL, str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, never keys or plaintext in a dump
        if os.environ.get("SEALBOX_DEBUG"):
            raise
        code, message = (
            Code.BUG,
            f"internal error ({type(exc).__name__}): this is a bug in sealbox; please report"
            " it (SEALBOX_DEBUG=1 shows the traceback)",
        )
    if code:
        if as_json and not stdout_broken():
            try:
                sys.stdout.write(json.dumps({"error": message, "exit_code": int(code)}) + "\n")
                sys.stdout.flush()
            except OSError:
                stdout_broken()
        err.print(f"[bold red]error:[/] {shown(message)}", highlight=False)
        raise typer.Exit(int(code))


_HINTS = {
    "device_revoked": "this device has been revoked by a coordinator; it can no longer sync."
    " Queued reports were kept on this device",
    "invite_unusable": "the invite is unknown, expired, already used or mistyped;"
    " ask a coordinator for a new one",
    "invite_cancelled": "a coordinator cancelled this invite; ask a coordinator for a new one",
    "admin_token_invalid": "the admin token is missing or wrong (set SEALBOX_ADMIN_TOKEN)",
    "admin_token_unset": "the server operator has not enabled organisation creation"
    " (SEALBOX_ADMIN_TOKEN is unset on the server)",
    "forbidden": "this device's role may not do that",
    "unknown_org": "the server does not know this organisation (or this device)",
}


def _explain_refusal(exc: SyncRefused) -> str:
    """The refusal in words: our hint for a known code (the server's detail is not repeated)."""
    hint = _HINTS.get(exc.code or "")
    if hint:
        return f"the server refused: {hint}"
    return f"the server refused ({exc.status} {exc.code or 'error'}): {safe(exc.detail)}"


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
        raise Exit(Code.LOCAL, "only coordinators can do this (field devices cannot read reports)")


INVITE_MAX_LIFETIME = 30 * 86400
"""The longest invite lifetime (PROTOCOL §8.1: `invite_max_lifetime`, 30 days by default).

A server may be configured shorter: its refusal (422 invite_invalid) is then shown as is."""


def _parse_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if not match:
        raise Exit(Code.LOCAL, "durations look like 30m, 24h or 7d")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def invite_lifetime(text: str) -> str:
    """``--expires``: a duration over zero and up to the protocol's 30 days (checked offline)."""
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r}: a lifetime looks like 30m, 24h or 7d")
    seconds = _parse_duration(text)
    if seconds == 0:
        raise typer.BadParameter(f"{text!r}: an invite needs a lifetime over zero, e.g. 24h")
    if seconds > INVITE_MAX_LIFETIME:
        raise typer.BadParameter(
            f"{text!r} = {seconds / 86400:g} days: an invite lives at most"
            f" {INVITE_MAX_LIFETIME // 86400} days (invite_max_lifetime, PROTOCOL §8.1),"
            " e.g. 24h or 7d"
        )
    return text


def server_url(url: str) -> str:
    """``--server``: an http:// or https:// URL with a host (else a usage error that says so)."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("http", "https") and parts.hostname:
        return url.strip().rstrip("/")
    if "://" not in url:
        raise typer.BadParameter(f"{url!r} has no scheme: add http:// or https://")
    raise typer.BadParameter(f"{url!r} is not an http:// or https:// URL with a host")


def _fields(pairs: list[str] | None) -> dict[str, FieldValue]:
    """``-f KEY=VALUE`` / ``-f KEY!`` options; a field given twice is refused, not overwritten."""
    seen: set[str] = set()
    for pair in pairs or []:
        name = pair.split("=", 1)[0] if "=" in pair else pair.removesuffix("!")
        if name in seen:
            raise Exit(
                Code.LOCAL,
                f"field {name!r} is given twice (-f {name}=...): give each field once",
            )
        seen.add(name)
    return parse_field_assignments(pairs or [])


def _call(transport: Transport, request: Request, *, bearer: str | None = None) -> Response:
    """Send one request; its answer if 200/201, else the server's refusal."""
    return expect(transport.send(request, bearer=bearer), 200, 201)


# --- writing reports --------------------------------------------------------------------------


def _resolve_report(view: CoordinatorView | Index | None, profile: Profile, prefix: str) -> bytes:
    candidates = set(profile.device_state().heads)
    if isinstance(view, Index):
        candidates |= set(view.report_ids())
    elif view is not None:
        candidates |= set(view.reports())
    matches = [r for r in candidates if r.hex().startswith(prefix.lower())]
    if len(matches) != 1:
        raise Exit(Code.LOCAL, f"no single report matches {prefix!r}")
    return matches[0]
