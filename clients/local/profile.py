"""A profile: one device's identity and state, loaded from and saved to its encrypted store.

Records (all inside `Store`, so encrypted; kinds and names are HMAC'd on disk):
  meta/profile   server URL, org id, device id, role, org name, label, last sync, warnings
  roster/trusted the newest roster version this profile verified (rollback floor)
  device/state   the device chain (`sync.client.DeviceState` without its outbox)
  outbox/<seq>   one queued envelope per record (purged on receipt)
  env/<id>       coordinators: every verified envelope pulled (re-verified on load)
  enroll/<id>    coordinators: enrollment documents verified against an invite
  invite/<id>    coordinators: invites this profile issued (to open device labels)
  index/gen      coordinators: the generation of HOME/index.sealed (clients/local/index.py),
                 changed in the same transaction as the envelopes, rosters and enrollments
  grant/<id>     coordinators: every grant document seen (clients/local/grants.py)
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import secrets
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from clients.local.index import INDEX_FILE, Index, IndexRefused, index_aad, index_key
from clients.local.passphrase import check_strength
from clients.local.store import PassphraseUnavailable, Secrets, Store, StoreError
from crypto import KemPrivateKey, SigningKey, encoding, parse_envelope
from sync.client import (
    CoordinatorView,
    DeviceState,
    OutboxItem,
    SnapshotRefused,
    chain_order,
    restore_view,
    retrust,
    trust_digest,
    view_trust,
)
from sync.grant import grant_id
from sync.invite import Enrollment
from sync.messages import b64encode
from sync.roster import Role, SignedRoster

__all__ = ["Profile", "ask_passphrase", "default_home", "passphrase"]


def default_home() -> Path:
    env = os.environ.get("SEALBOX_HOME")
    return Path(env) if env else Path(typer.get_app_dir("sealbox"))


def _has_terminal() -> bool:
    """Whether a hidden prompt can be shown (getpass asks on the controlling terminal)."""
    if os.name != "posix":
        return sys.stdin.isatty()
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def passphrase(*, confirm: bool) -> bytes:
    """The passphrase from SEALBOX_PASSPHRASE, else a hidden prompt on the terminal."""
    return ask_passphrase("SEALBOX_PASSPHRASE", "Passphrase", confirm=confirm)


def ask_passphrase(variable: str, label: str, *, confirm: bool) -> bytes:
    """The value of the environment ``variable``, else asked (hidden) on the terminal.

    Without either, `PassphraseUnavailable` says so (getpass would otherwise warn,
    GetPassWarning, and read the passphrase from stdin with echo).
    """
    env = os.environ.get(variable)
    if env:
        return env.encode()
    unavailable = PassphraseUnavailable(
        f"no {label.lower()}: set {variable}, or run sealbox in a terminal to be asked for it"
    )
    if not _has_terminal():
        raise unavailable
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            text = typer.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
        except getpass.GetPassWarning:
            raise unavailable from None
    return str(text).encode()


@dataclass
class Profile:
    home: Path
    store: Store
    meta: dict[str, Any]
    _outbox_names: set[str] = field(default_factory=set)
    _view: CoordinatorView | None = None
    _index: Index | None = None
    _index_dirty: bool = False
    _generation: bytes | None = None  # the store's index generation the view is current with

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        home: Path,
        secret: Secrets,
        meta: dict[str, Any],
        roster: SignedRoster,
        *,
        chain: list[SignedRoster] | None = None,
        confirm: bool = True,
        secret_passphrase: bytes | None = None,
    ) -> Profile:
        """A new profile in ``home``; ``secret_passphrase`` if already asked, else asked now."""
        if secret_passphrase is None:
            secret_passphrase = passphrase(confirm=confirm)
        store = Store.create(home, secret_passphrase, secret)
        profile = cls(home, store, dict(meta))
        with store.transaction():
            profile.save_meta()
            for version in chain or []:
                profile.set_roster(version)
            profile.set_roster(roster)
            profile.save_device(DeviceState(org_id=meta["org"], device_id=meta["device"]))
        return profile

    @classmethod
    def prepare(cls, home: Path, *, context: tuple[str, ...] = ()) -> bytes:
        """Before a new profile talks to the server: ``home`` is free and writable, and the
        passphrase of the new profile (asked twice on a terminal), strong enough
        (`clients.local.passphrase.check_strength`; ``context``: names it must not lean on).

        ``org create`` and ``enroll`` register on the server first; a home that cannot
        be written, or a passphrase that cannot be had, would leave an organisation or
        a used invite behind.
        """
        if (home / "keyfile").exists():
            raise StoreError(f"a profile already exists in {home}; use another --home")
        secret_passphrase = passphrase(confirm=True)
        check_strength(secret_passphrase, context=context)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = home / f".probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes(4096))
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink()
        return secret_passphrase

    @classmethod
    def open(cls, home: Path, *, secret_passphrase: bytes | None = None) -> Profile:
        Store.check(home)  # a missing profile is said before the passphrase is asked
        if secret_passphrase is None:
            secret_passphrase = passphrase(confirm=False)
        store = Store.open(home, secret_passphrase)
        meta = store.get_cbor("meta", "profile")
        return cls(home, store, meta)

    def close(self) -> None:
        try:
            self.flush_index()
        finally:
            self.store.close()

    # --- identity --------------------------------------------------------------------------
    @property
    def org_id(self) -> bytes:
        return bytes(self.meta["org"])

    @property
    def device_id(self) -> bytes:
        return bytes(self.meta["device"])

    @property
    def role(self) -> Role:
        return Role(self.meta["role"])

    @property
    def server_url(self) -> str:
        return str(self.meta["server"])

    @property
    def org_path(self) -> str:
        return f"/v1/orgs/{b64encode(self.org_id)}"

    @property
    def signing_key(self) -> SigningKey:
        return self.store.secrets.signing_key

    @property
    def kem_key(self) -> KemPrivateKey:
        key = self.store.secrets.kem_key
        if key is None:
            raise typer.BadParameter("only coordinators hold a decryption key")
        return key

    def save_meta(self) -> None:
        self.store.put_cbor("meta", "profile", self.meta)

    def warn(self, text: str) -> None:
        warnings = list(self.meta.get("warnings", []))
        if text not in warnings:
            warnings.append(text)
        self.meta["warnings"] = warnings[-20:]
        self.save_meta()

    # --- roster ----------------------------------------------------------------------------
    @property
    def roster(self) -> SignedRoster:
        return SignedRoster.parse(self.store.get("roster", "trusted") or b"")

    def set_roster(self, roster: SignedRoster) -> None:
        """Trust ``roster`` (already verified) and keep it in the chain of verified versions."""
        with self.store.transaction():
            self._next_generation()
            self.store.put("roster", "trusted", roster.to_bytes())
            self.store.put("rosterv", f"{roster.roster.version:08d}", roster.to_bytes())

    def roster_chain(self) -> list[SignedRoster]:
        """Every roster version this profile verified, oldest first (to heal a restored server)."""
        return [SignedRoster.parse(data) for _, data in self.store.items("rosterv")]

    # --- the device chain and outbox -----------------------------------------------------------
    def device_state(self) -> DeviceState:
        raw = self.store.get_cbor("device", "state")
        state = DeviceState.from_cbor(raw)
        items = self.store.items("outbox")
        state.outbox = [OutboxItem.from_cbor(encoding.decode(payload)) for _, payload in items]
        state.outbox.sort(key=lambda i: i.seq)
        self._outbox_names = {name for name, _ in items}
        return state

    def save_device(self, state: DeviceState) -> None:
        with self.store.transaction():
            raw = state.to_cbor()
            raw["ob"] = []
            # Receipts are the device's proof of delivery: every one is kept, as its own record.
            for receipt in state.receipts:
                self.store.put("receipt", hashlib.sha256(receipt).hexdigest(), receipt)
            raw["rc"] = []
            state.receipts.clear()
            self.store.put_cbor("device", "state", raw)
            current = {f"{i.seq:012d}": i for i in state.outbox}
            for name in self._outbox_names - set(current):
                self.store.delete("outbox", name)
            for name in set(current) - self._outbox_names:
                self.store.put_cbor("outbox", name, current[name].to_cbor())
            self._outbox_names = set(current)

    # --- coordinators --------------------------------------------------------------------------
    def enrollments(self) -> list[Enrollment]:
        out = []
        for _, payload in self.store.items("enroll"):
            out.append(Enrollment.parse_and_verify(payload)[0])
        return out

    def save_enrollments(
        self, enrollments: list[Enrollment], documents: dict[bytes, bytes]
    ) -> None:
        self._next_generation()
        for enrollment in enrollments:
            data = documents.get(enrollment.device_id)
            if data is not None:
                self.store.put("enroll", enrollment.device_id.hex(), data)

    # --- the verified view and its encrypted index (clients/local/index.py) ------------------
    def _next_generation(self) -> None:
        """Make the sealed index stale: what it was computed from is changing. The index of
        the generation ending is opened first, so that it is updated, not rebuilt."""
        if self.store.secrets.kem_seed is not None:
            if self._view is None and self._index is None and not self._index_dirty:
                self._index = self._sealed_index()
            self._generation = secrets.token_bytes(16)
            self.store.put("index", "gen", self._generation)
            self._index_dirty = True

    def _index_aad(self) -> bytes:
        generation = self.store.get("index", "gen") or b""
        return index_aad(self.org_id, self.device_id, generation)

    def _sealed_index(self) -> Index | None:
        """The index on disk, if it opens under this generation (else None: rebuild)."""
        try:
            blob = (self.home / INDEX_FILE).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Index.open(blob, index_key(self.store.secrets.store_key), self._index_aad())
        except IndexRefused:
            return None

    def _trust(self) -> dict[str, Any]:
        return {
            "roster": self.roster,
            "kem_key": self.kem_key,
            "enrollments": self.enrollments(),
            "history": self.roster_chain(),
            "also_keys": [k for k in (self.store.secrets.recovery_key,) if k is not None],
            "grants": [data for _, data in self.store.items("grant")],
        }

    def view(self) -> CoordinatorView:
        """The verified view: restored from the index's snapshot when it is current (new
        envelopes are verified and taken in), else rebuilt from every envelope kept."""
        if self._view is not None:
            return self._view
        self._generation = self.store.get("index", "gen")
        trust = self._trust()
        envelopes = {bytes.fromhex(name): data for name, data in self.store.items("env")}
        index = self._index or self._sealed_index()
        view = None
        if index is not None:
            try:
                view = restore_view(index.snapshot(), envelopes=envelopes, **trust)
            except SnapshotRefused:
                index = None
        if view is None:
            view = CoordinatorView(**trust)
            # Device order makes the ratchet walk each chain once.
            for data in sorted(envelopes.values(), key=chain_order):
                view.ingest(data)
        self._index_dirty |= index is None or bool(view.changed)
        self._view, self._index = view, index
        return view

    def index(self) -> Index:
        """The index of verified, merged state, current with the store (built if needed)."""
        if self._index is None and not self._index_dirty:
            self._index = self._sealed_index()
        if self._index is None or self._index_dirty:
            self.flush_index(force=True)
        assert self._index is not None
        return self._index

    def flush_index(self, *, force: bool = False) -> None:
        """Bring the index up to date with the view and write it sealed (at command end)."""
        view = self._view
        if not (self._index_dirty or force) or self.store.secrets.kem_seed is None:
            return
        if view is None:
            view = self.view()
        trust = self._trust()
        current = trust_digest(
            trust["roster"], trust["kem_key"], trust["enrollments"],
            {r.roster.version for r in trust["history"]} | {trust["roster"].roster.version},
            [grant_id(d) for d in trust["grants"]],
        )  # fmt: skip
        moved = current != view_trust(view)
        if moved:
            # The trust changed beside the view (a roster kept, a device admitted or revoked,
            # a grant kept): only the devices whose standing changed are judged again
            # (sync.client.retrust), and grants refused for want of a roster version again.
            history = {r.roster.version: r.roster for r in trust["history"]}
            retrust(view, trust["roster"], trust["enrollments"], history)
            view.add_grants(trust["grants"])
        if self._index is None or view.changed_all:
            self._index = Index.build(view)
        elif view.changed or moved:  # a trust change alone still changes the findings
            self._index.update(view, view.changed)
        view.changed.clear()
        view.changed_all = False
        if self.store.get("index", "gen") != self._generation:
            return  # another process changed the store since: its index, or a rebuild, wins
        key = index_key(self.store.secrets.store_key)
        try:
            self._index.write(self.home / INDEX_FILE, key, self._index_aad())
        except OSError:
            # A cache: a read-only or full disk costs a rebuild next time, not this command.
            with contextlib.suppress(OSError):
                (self.home / (INDEX_FILE + ".tmp")).unlink(missing_ok=True)
            return
        self._index_dirty = False

    def keep_envelopes(self, envelopes: tuple[bytes, ...] | list[bytes]) -> None:
        """Keep verified envelopes and take them into the view (the index follows at close)."""
        if not envelopes:
            return
        view = self.view()  # from the index of the current generation, before it changes
        parsed = [(parse_envelope(data), data) for data in envelopes]
        with self.store.transaction():
            for envelope, data in parsed:
                self.store.put("env", envelope.id.hex(), data)
            self._next_generation()
        parsed.sort(key=lambda p: (p[0].header.device, p[0].header.seq))
        for envelope, _ in parsed:
            view.ingest(envelope)
        self._index_dirty = True
