"""Choosing and changing a passphrase (clients/local/passphrase.py, PROTOCOL §12.5), played
against a seized key file (the floor) and a crash (the replacement)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.local.passphrase import (
    FLOOR_LOG10,
    WeakPassphrase,
    change_passphrase,
    check_strength,
)
from clients.local.store import KEYFILE, Secrets, Store, StoreError
from crypto import VerificationFailed
from crypto.keyfile import unwrap_keyfile

OLD = b"correct horse battery staple"
NEW = b"lantern quarry mustard violet harbour"


def _profile(home: Path) -> Secrets:
    secret = Secrets.generate(coordinator=True)
    Store.create(home, OLD, secret).close()
    return secret


@pytest.mark.parametrize(
    "weak",
    [b"password123", b"hunter2", b"Tr0ub4dor&3", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"",
     b"river stone candle", b"sealbox sealbox sealbox", "пароль123".encode()],
)  # fmt: skip
def test_passphrases_below_the_floor_are_refused_with_a_reason(weak: bytes) -> None:
    """PROTOCOL §12.5: below 10^14 estimated guesses; the message gives the estimate, the
    floor and what to do, never the passphrase itself."""
    with pytest.raises(WeakPassphrase) as refused:
        check_strength(weak)
    text = str(refused.value)
    assert f"10^{FLOOR_LOG10}" in text and "random words" in text
    if weak:
        assert weak.decode() not in text


def test_the_context_counts_against_a_passphrase() -> None:
    """PROTOCOL §12.5: the organisation's name and the device's label are no secret."""
    phrase = b"Kharkiv Legal Aid Collective"
    check_strength(phrase)
    with pytest.raises(WeakPassphrase):
        check_strength(phrase, context=("Kharkiv Legal Aid Collective",))


def test_four_random_words_pass() -> None:
    """PROTOCOL §12.5: the floor is reachable by the advice it gives."""
    for phrase in (NEW, OLD, b"kettle orbit fennel drizzle"):
        check_strength(phrase)


def test_a_change_rewraps_the_same_secrets_and_the_old_passphrase_opens_nothing(
    tmp_path: Path,
) -> None:
    """PROTOCOL §12.5: the store key (and every secret) is unchanged; only the wrap moves."""
    home = tmp_path / "p"
    secret = _profile(home)
    change_passphrase(home, OLD, NEW)
    with pytest.raises(StoreError):
        Store.open(home, OLD)
    store = Store.open(home, NEW)
    assert store.secrets == secret
    store.close()
    assert (home / KEYFILE).stat().st_mode & 0o777 == 0o600


def test_a_wrong_old_passphrase_or_a_weak_new_one_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "p"
    _profile(home)
    before = (home / KEYFILE).read_bytes()
    with pytest.raises(StoreError, match="wrong passphrase"):
        change_passphrase(home, b"not the passphrase at all, sorry", NEW)
    with pytest.raises(WeakPassphrase):
        change_passphrase(home, OLD, b"password123")
    with pytest.raises(StoreError, match="the old one"):
        change_passphrase(home, OLD, OLD)
    assert (home / KEYFILE).read_bytes() == before
    assert not (home / (KEYFILE + ".tmp")).exists()


_CHILD = """
import sys
from pathlib import Path
from clients.local.passphrase import change_passphrase
change_passphrase(Path(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode())
"""


@pytest.mark.parametrize("when", ["at once", "new file written"])
def test_a_change_killed_mid_way_leaves_exactly_one_valid_key_file(
    tmp_path: Path, when: str, no_leaked_processes: None
) -> None:
    """PROTOCOL §12.5: SIGKILL before anything is written, or as soon as the new file
    appears beside the old: `keyfile` opens under the old passphrase or the new one, with
    the same secrets, and never under neither."""
    home = tmp_path / "p"
    secret = _profile(home)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(home), OLD.decode(), NEW.decode()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if when == "new file written":
            deadline = time.monotonic() + 60
            while not (home / (KEYFILE + ".tmp")).exists() and child.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    blob = (home / KEYFILE).read_bytes()
    opened = []
    for candidate in (OLD, NEW):
        try:
            opened.append(Secrets.decode(unwrap_keyfile(blob, candidate)))
        except VerificationFailed:
            pass
    assert opened == [secret]
    # Whatever a leftover keyfile.tmp holds, a later change goes through.
    try:
        Store.open(home, OLD).close()
        change_passphrase(home, OLD, NEW)
    except StoreError:
        change_passphrase(home, NEW, OLD)
