"""`sealbox desk`: serve Sealbox Desk on 127.0.0.1 and open the browser on a one-time URL."""

from __future__ import annotations

import os
import socket
import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from clients.local.store import Store
from clients.reference_cli.common import Code, Exit, Home, Json, _errors, _home

from .edge import Gate


def _writable(home: Path) -> None:
    """The Desk writes to the profile (edits, syncs): say at once if it cannot."""
    probe = home / f".desk-probe-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def desk(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the address; do not open a browser.")
    ] = False,
    idle_minutes: Annotated[
        float, typer.Option(help="Lock (close the profile, drop keys) after this idle time.")
    ] = 10,
    lang: Annotated[
        str | None,
        typer.Option(help="Language of the pages: en or ru (default: from LANG, else en)."),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Serve Sealbox Desk, the coordinators' web console, on this computer only."""
    import uvicorn  # the web stack loads only for `sealbox desk`, not every command

    from .app import Desk, create_app, language_of, passphrase_from_env

    with _errors(as_json):
        try:
            language = language_of(lang, os.environ)
        except ValueError as exc:
            raise Exit(Code.USAGE, str(exc)) from None
        path = _home(home)
        Store.check(path)
        if not no_browser:
            try:
                webbrowser.get()
            except webbrowser.Error:
                raise Exit(
                    Code.LOCAL,
                    "no browser to open here: run `sealbox desk --no-browser` and open the"
                    " address it prints",
                ) from None
        _writable(path)
        gate = Gate(port=port or _free_port())
        state = Desk(path, gate, idle_seconds=idle_minutes * 60, lang=language)
        env_passphrase = passphrase_from_env()
        if env_passphrase is not None:
            state.worker.submit(state.unlock, env_passphrase).result()
        app = create_app(state)
        # The one-time address goes to the terminal only (never to a log file).
        sys.stdout.write(f"Sealbox Desk: {gate.url}\n")
        sys.stdout.flush()
        if not no_browser:
            webbrowser.open(gate.url)
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=gate.port,
            log_level="warning",
            access_log=False,  # the access log would hold the one-time token
            server_header=False,
        )
