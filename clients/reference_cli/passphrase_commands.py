"""`sealbox passphrase change`: re-protect this profile's key file under a new passphrase.

The old passphrase comes from SEALBOX_PASSPHRASE or a prompt, the new one from
SEALBOX_NEW_PASSPHRASE or a prompt asked twice.  A weak new passphrase is refused with
the reason (`clients.local.passphrase.check_strength`, PROTOCOL §12.5).  The store is
not touched: its key, inside the key file, stays the same.
"""

from __future__ import annotations

import time

import typer

from clients.local.passphrase import change_passphrase, check_strength, new_passphrase
from clients.local.profile import passphrase
from clients.local.store import Store
from clients.reference_cli.common import Home, Json, _errors, _home, _out, err

passphrase_app = typer.Typer(help="This profile's passphrase.", no_args_is_help=True)


@passphrase_app.command("change")
def passphrase_change(home: Home = None, as_json: Json = False) -> None:
    """Re-protect the key file with a new passphrase (the old one stops working at once).

    Copies or backups of the old key file still open with the old passphrase: a
    passphrase change does not undo a copy someone already made.
    """
    with _errors(as_json):
        path = _home(home)
        Store.check(path)  # a missing profile is said before any passphrase is asked
        old = passphrase(confirm=False)
        new = new_passphrase()
        check_strength(new)  # before the slow derivations, so a refusal is quick
        started = time.monotonic()
        change_passphrase(path, old, new)
        seconds = time.monotonic() - started
        _out(
            as_json,
            {"changed": True, "seconds": round(seconds, 3)},
            lambda: err.print(
                "Passphrase changed: the key file is re-protected, the store is unchanged."
                " The old passphrase no longer opens this profile (but still opens any copy"
                " of the old key file)."
            ),
        )
