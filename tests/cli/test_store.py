"""The local store: encrypted at rest, names hidden, records bound to their names, panic wipe."""

from __future__ import annotations

import sqlite3

import pytest

from clients.local.store import ProfileMissing, Secrets, Store, StoreError, wipe
from tests.cli.conftest import grep_tree

PASS = b"a long enough passphrase"


@pytest.fixture(scope="module")
def secret() -> Secrets:
    return Secrets.generate(coordinator=True)


def test_records_round_trip_and_nothing_is_readable_on_disk(tmp_path, secret) -> None:
    store = Store.create(tmp_path, PASS, secret)
    store.put("env", "CANARY-name-report-42", b"CANARY-payload-Kherson")
    store.put_cbor("meta", "profile", {"name": "CANARY-org-name"})
    store.close()
    assert grep_tree(tmp_path, [b"CANARY", b"profile", b"outbox"]) == []
    reopened = Store.open(tmp_path, PASS)
    assert reopened.get("env", "CANARY-name-report-42") == b"CANARY-payload-Kherson"
    assert reopened.items("env") == [("CANARY-name-report-42", b"CANARY-payload-Kherson")]
    assert reopened.get("env", "other") is None
    assert reopened.secrets.kem_seed == secret.kem_seed
    reopened.close()


def test_a_wrong_passphrase_fails_cleanly(tmp_path, secret) -> None:
    Store.create(tmp_path, PASS, secret).close()
    with pytest.raises(StoreError, match="wrong passphrase"):
        Store.open(tmp_path, b"guess")


def test_a_record_moved_to_another_name_does_not_open(tmp_path, secret) -> None:
    store = Store.create(tmp_path, PASS, secret)
    store.put("outbox", "a", b"first")
    store.put("outbox", "b", b"second")
    db = sqlite3.connect(tmp_path / "store.db")
    rows = db.execute("SELECT key, value FROM records").fetchall()
    (key_a, value_a), (key_b, value_b) = rows
    db.execute("UPDATE records SET value = ? WHERE key = ?", (value_b, key_a))
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        store.items("outbox")
    store.close()


def test_panic_wipe_destroys_the_key_file_first_and_leaves_nothing(tmp_path, secret) -> None:
    home = tmp_path / "home"
    store = Store.create(home, PASS, secret)
    for i in range(200):
        store.put("env", str(i), bytes(2048))
    store.close()
    seconds = wipe(home)
    assert seconds < 0.5
    assert not home.exists()
    with pytest.raises(ProfileMissing):
        Store.open(home, PASS)


def test_creating_over_an_existing_profile_is_refused(tmp_path, secret) -> None:
    Store.create(tmp_path, PASS, secret).close()
    with pytest.raises(StoreError, match="already exists"):
        Store.create(tmp_path, PASS, secret)
