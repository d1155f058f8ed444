"""Choosing and changing a profile's passphrase (PROTOCOL §12.5).

Theory of operation:
* The floor.  A seized key file can be attacked offline, at the attacker's pace, with
  every guess costing one Argon2id derivation at the file's parameters (§12.1: at least
  m = 64 MiB, t = 3, p = 4).  Each guess must write and read 3 × 64 MiB of memory, so
  even a large GPU, bound by its memory bandwidth (about 1 TB/s), makes no more than
  about 2,500 guesses a second; a laptop core makes about 5 (0.19 s per derivation,
  measured on the reference machine).  `FLOOR_LOG10` = 14 asks that `zxcvbn` (Dropbox's
  estimator, a guess count under a model of how people choose passwords: dictionaries,
  names, keyboard walks, substitutions, dates) rates the passphrase at 10^14 guesses or
  more: about 1,300 GPU-years at that rate, 16 months for a thousand GPUs, for the whole
  space.  zxcvbn's own "score 4" (10^10 guesses) falls to one GPU in about 46 days, which
  is too little against the adversary of THREAT_MODEL §5 (a raid, devices seized, time).
  Four random words pass; three uncommon words usually pass; a word with digits does not.
* The floor applies wherever a person chooses a passphrase: `org create`, `enroll`
  (`Profile.prepare`) and `passphrase change`.  Opening a profile never judges it.
* `change_passphrase` re-protects the key file and touches nothing else: the secrets
  inside (the store key among them) stay the same, so the store and the index open as
  before.  The new file is written beside the old (``keyfile.tmp``, mode 0600), synced,
  read back and opened with the new passphrase, and only then renamed over the old one
  and the directory synced: at every instant exactly one complete key file is
  ``keyfile``, under the old passphrase until the rename is durable, under the new one
  after.  The old file's bytes are then overwritten in place (best effort: a copy-on-write
  file system or an SSD may keep them; a copy or backup of the old file still opens with
  the old passphrase, THREAT_MODEL §5).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from clients.local.files import fsync_dir, temporary_for, write_synced
from clients.local.store import KEYFILE, Store, StoreError
from crypto import VerificationFailed
from crypto.keyfile import unwrap_keyfile, wrap_keyfile

__all__ = [
    "FLOOR_LOG10",
    "WeakPassphrase",
    "change_passphrase",
    "check_strength",
    "new_passphrase",
]

FLOOR_LOG10 = 14
"""The fewest guesses, as a power of ten, zxcvbn must estimate for a new passphrase."""

_ESTIMATED_CHARS = 72
"""zxcvbn judges at most this many characters (its ``max_length``); a longer passphrase is
judged by its start, which can only underestimate it."""


class WeakPassphrase(StoreError):
    """A new passphrase is below the floor; the message says why and what to do."""


def check_strength(passphrase: bytes, *, context: Sequence[str] = ()) -> None:
    """Refuse ``passphrase`` below `FLOOR_LOG10`, explaining why (`WeakPassphrase`).

    ``context``: words the passphrase should not lean on (the organisation's name, the
    device's label); "sealbox" is always one.
    """
    text = passphrase.decode("utf-8", errors="replace")
    words = ["sealbox", *(w for w in context if w)]
    # zxcvbn fails on the empty string (an IndexError in 4.5.0): it is no passphrase.
    guesses, hints = 0.0, ["An empty passphrase protects nothing."]
    if text:
        from zxcvbn import zxcvbn  # its dictionaries load only when a passphrase is set

        result = zxcvbn(text[:_ESTIMATED_CHARS], user_inputs=words)
        guesses = float(result["guesses_log10"])
        feedback = result["feedback"]
        hints = [str(feedback["warning"] or ""), *(str(s) for s in feedback["suggestions"])]
    if guesses >= FLOOR_LOG10:
        return
    said = " ".join(h.rstrip(".") + "." for h in hints if h)
    raise WeakPassphrase(
        f"this passphrase is too easy to guess: about 10^{guesses:.0f} guesses, and a seized"
        f" key file can be attacked offline, so sealbox asks for at least 10^{FLOOR_LOG10}"
        " (PROTOCOL §12.5)." + (f" {said}" if said else "") + " Use four or more random words,"
        " e.g. picked with dice from a word list; nothing was changed"
    )


def new_passphrase() -> bytes:
    """The new passphrase: SEALBOX_NEW_PASSPHRASE, else asked twice on the terminal."""
    from clients.local.profile import ask_passphrase

    return ask_passphrase("SEALBOX_NEW_PASSPHRASE", "New passphrase", confirm=True)


def change_passphrase(home: Path, old: bytes, new: bytes) -> None:
    """Re-protect ``home``'s key file under ``new`` (the secrets inside are unchanged).

    Raises:
        StoreError: the old passphrase is wrong (or the key file damaged), or ``new`` is it.
        WeakPassphrase: ``new`` is below the floor (checked before anything is derived).
        OSError: the new file could not be written; the old one is then still in place.
    """
    Store.check(home)
    if secrets.compare_digest(old, new):
        raise StoreError("the new passphrase is the old one: nothing was changed")
    check_strength(new)
    path = home / KEYFILE
    try:
        secret = unwrap_keyfile(path.read_bytes(), old)
    except VerificationFailed as exc:
        raise StoreError("wrong passphrase (or a damaged key file): nothing was changed") from exc
    blob = wrap_keyfile(secret, new)
    temporary = temporary_for(path)  # `wipe` shreds a leftover one too
    try:
        write_synced(temporary, blob)
        # Read back what the disk holds and open it: never rename a file that does not open.
        try:
            if unwrap_keyfile(temporary.read_bytes(), new) != secret:
                raise VerificationFailed()
        except VerificationFailed:
            raise StoreError("the new key file did not read back: nothing was changed") from None
        with path.open("r+b", buffering=0) as previous:
            os.replace(temporary, path)
            fsync_dir(home)
            _shred(previous)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def _shred(handle: io.FileIO) -> None:
    """Overwrite the replaced key file's bytes, if no other name still links them."""
    with contextlib.suppress(OSError):
        info = os.fstat(handle.fileno())
        if info.st_nlink == 0:
            handle.seek(0)
            handle.write(secrets.token_bytes(max(info.st_size, 1)))
            os.fsync(handle.fileno())
