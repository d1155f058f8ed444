"""The local store: everything a profile keeps on disk, encrypted at rest.

Theory of operation:
* ``HOME/keyfile`` holds the profile's long-term secrets (device signing seed,
  coordinator HPKE seed, store key), wrapped with Argon2id from the passphrase
  by `crypto.keyfile` (docs/PROTOCOL.md §12).  A wrong passphrase fails there,
  cleanly, before anything else is read.
* ``HOME/store.db`` is an SQLite file used as a container of opaque records
  ``(kind, key, value)``: ``kind`` and ``key`` are HMACs under the store key (so
  record names such as report ids never appear), ``value`` is
  ``nonce || ChaCha20-Poly1305(store key, nonce, CBOR [name, payload], aad)``
  with a random nonce and ``aad`` binding the record's kind and name, so a
  record cannot be moved to another name.  ``secure_delete`` makes SQLite zero
  what it frees (purged envelopes).
* Panic wipe (`wipe`): the key file is overwritten with random bytes, synced and
  unlinked first (crypto-shredding: without it the rest is ciphertext under a
  lost key), then every other file of the profile is removed.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from clients.local.files import write_private
from crypto import KemPrivateKey, SigningKey, VerificationFailed, encoding
from crypto.keyfile import unwrap_keyfile, wrap_keyfile

__all__ = ["PassphraseUnavailable", "ProfileMissing", "Secrets", "Store", "StoreError", "wipe"]

KEYFILE = "keyfile"
DATABASE = "store.db"
_AAD_PREFIX = b"sealbox/v1/local-store\x00"


class StoreError(Exception):
    """The store cannot be opened (wrong passphrase, damaged files)."""


class ProfileMissing(StoreError):
    """No profile in this home (never created, or wiped)."""


class PassphraseUnavailable(StoreError):
    """No passphrase can be had: SEALBOX_PASSPHRASE is unset and there is no terminal."""


@dataclass(frozen=True, slots=True, repr=False)
class Secrets:
    signing_seed: bytes
    store_key: bytes
    kem_seed: bytes | None = None
    # A restored coordinator keeps the organisation's recovery HPKE seed, to read the epochs
    # sealed before it joined (PROTOCOL §20.4).
    recovery_seed: bytes | None = None

    @classmethod
    def generate(cls, *, coordinator: bool) -> Secrets:
        return cls(
            secrets.token_bytes(32),
            secrets.token_bytes(32),
            secrets.token_bytes(32) if coordinator else None,
        )

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.signing_seed)

    @property
    def kem_key(self) -> KemPrivateKey | None:
        return KemPrivateKey(self.kem_seed) if self.kem_seed is not None else None

    @property
    def recovery_key(self) -> KemPrivateKey | None:
        return KemPrivateKey(self.recovery_seed) if self.recovery_seed is not None else None

    def encode(self) -> bytes:
        raw = {"s": self.signing_seed, "k": self.store_key, "e": self.kem_seed}
        if self.recovery_seed is not None:
            raw["r"] = self.recovery_seed
        return encoding.encode(raw)

    @classmethod
    def decode(cls, data: bytes) -> Secrets:
        raw = encoding.decode(data)
        return cls(raw["s"], raw["k"], raw["e"], raw.get("r"))


class Store:
    """An open profile store. Use `create` or `open`; close with `close`."""

    def __init__(self, home: Path, secret: Secrets) -> None:
        self.home = home
        self.secrets = secret
        self._aead = ChaCha20Poly1305(secret.store_key)
        self._db = sqlite3.connect(home / DATABASE, isolation_level=None)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind BLOB NOT NULL, key BLOB NOT NULL,"
            " value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID"
        )
        self._depth = 0

    # --- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, home: Path, passphrase: bytes, secret: Secrets) -> Store:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (home / KEYFILE).exists():
            raise StoreError(f"a profile already exists in {home}")
        write_private(home / KEYFILE, wrap_keyfile(secret.encode(), passphrase))
        return cls(home, secret)

    @staticmethod
    def check(home: Path) -> None:
        """Raise `ProfileMissing` unless ``home`` holds a profile (no passphrase needed)."""
        if not (home / KEYFILE).exists():
            raise ProfileMissing(
                f"no sealbox profile in {home} (create one with `org create` or `enroll`)"
            )

    @classmethod
    def open(cls, home: Path, passphrase: bytes) -> Store:
        cls.check(home)
        path = home / KEYFILE
        try:
            secret = Secrets.decode(unwrap_keyfile(path.read_bytes(), passphrase))
        except VerificationFailed as exc:
            raise StoreError("wrong passphrase (or a damaged key file)") from exc
        return cls(home, secret)

    def replace_secrets(self, passphrase: bytes, secret: Secrets) -> None:
        """Write a key file holding ``secret`` (same store key: the records stay readable),
        atomically: a key rotation (PROTOCOL §19.7) changes the device's keys in place."""
        if secret.store_key != self.secrets.store_key:
            raise StoreError("a key rotation keeps the store key")
        blob = wrap_keyfile(secret.encode(), passphrase)
        temporary = self.home / (KEYFILE + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.home / KEYFILE)
        self.secrets = secret

    def close(self) -> None:
        self._db.close()

    # --- records -----------------------------------------------------------------------------
    def _tags(self, kind: str, name: str) -> tuple[bytes, bytes]:
        key = self.secrets.store_key
        kind_tag = hmac.digest(key, b"kind\x00" + kind.encode(), "sha256")[:16]
        name_tag = hmac.digest(key, b"key\x00" + kind.encode() + b"\x00" + name.encode(), "sha256")[
            :16
        ]
        return kind_tag, name_tag

    def put(self, kind: str, name: str, payload: bytes) -> None:
        kind_tag, name_tag = self._tags(kind, name)
        nonce = secrets.token_bytes(12)
        aad = _AAD_PREFIX + kind_tag + name_tag
        sealed = nonce + self._aead.encrypt(nonce, encoding.encode([name, payload]), aad)
        self._db.execute(
            "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
            (kind_tag, name_tag, sealed),
        )

    def _open(
        self, kind: str, kind_tag: bytes, name_tag: bytes, sealed: bytes
    ) -> tuple[str, bytes]:
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], _AAD_PREFIX + kind_tag + name_tag)
            name, payload = encoding.decode(plain)
        except (InvalidTag, encoding.CanonicalError, ValueError) as exc:
            raise StoreError("a record of the local store does not open") from exc
        if self._tags(kind, name)[1] != name_tag:
            raise StoreError("a record of the local store is misplaced")
        return name, payload

    def get(self, kind: str, name: str) -> bytes | None:
        kind_tag, name_tag = self._tags(kind, name)
        row = self._db.execute(
            "SELECT value FROM records WHERE kind = ? AND key = ?", (kind_tag, name_tag)
        ).fetchone()
        return None if row is None else self._open(kind, kind_tag, name_tag, row[0])[1]

    def get_cbor(self, kind: str, name: str) -> Any:
        data = self.get(kind, name)
        return None if data is None else encoding.decode(data)

    def put_cbor(self, kind: str, name: str, value: Any) -> None:
        self.put(kind, name, encoding.encode(value))

    def delete(self, kind: str, name: str) -> None:
        self._db.execute("DELETE FROM records WHERE kind = ? AND key = ?", self._tags(kind, name))

    def items(self, kind: str) -> list[tuple[str, bytes]]:
        """Every record of ``kind`` as (name, payload), in name order."""
        kind_tag = self._tags(kind, "")[0]
        rows = self._db.execute(
            "SELECT key, value FROM records WHERE kind = ?", (kind_tag,)
        ).fetchall()
        return sorted(self._open(kind, kind_tag, key, value) for key, value in rows)

    def count(self, kind: str) -> int:
        kind_tag = self._tags(kind, "")[0]
        row = self._db.execute(
            "SELECT count(*) FROM records WHERE kind = ?", (kind_tag,)
        ).fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically (nested use joins the outer transaction)."""
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")


def _overwrite(path: Path) -> None:
    try:
        size = path.stat().st_size
        with path.open("r+b", buffering=0) as handle:
            handle.write(secrets.token_bytes(max(size, 1)))
            os.fsync(handle.fileno())
    except OSError:
        pass


def wipe(home: Path) -> float:
    """Crypto-shred the profile in ``home``: key file first, then the rest. Returns seconds."""
    start = time.monotonic()
    keyfile = home / KEYFILE
    if keyfile.exists():
        _overwrite(keyfile)
        keyfile.unlink()
    for leftover in (home / (KEYFILE + ".tmp"),):
        if leftover.exists():
            _overwrite(leftover)
            leftover.unlink()
    if home.exists():
        for path in sorted(home.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_file() or path.is_symlink():
                path.unlink()
            elif path.is_dir():
                path.rmdir()
        home.rmdir()
    return time.monotonic() - start
