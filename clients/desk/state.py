"""The Desk's state: the unlocked profile, its one worker thread, the languages, and what
a failure tells the coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypeVar

from babel.support import NullTranslations, Translations
from fastapi import Form

from clients.local.profile import Profile
from clients.local.store import KEYFILE, StoreError, _overwrite, wipe
from clients.local.transport import NetworkError
from clients.reference_cli.attachments import AttachmentFailed
from clients.reference_cli.common import Exit, _explain_refusal
from sync.client import ServerMisbehaved, SyncRefused
from sync.invite import InviteError
from sync.report import ContentError
from sync.roster import Role, RosterError

from . import actions
from .edge import Gate, Idle
from .reading import Reading

HERE = Path(__file__).parent
T = TypeVar("T")
LOCALE_DIR = HERE / "locale"
LANGUAGES = ("en", "ru")
"""Languages with a complete catalog (tests/desk/test_catalogs.py); English is the source."""


def language_of(choice: str | None, environ: Mapping[str, str]) -> str:
    """The Desk's language: ``choice`` if given, else the first of the POSIX locale
    variables (LC_ALL, LC_MESSAGES, LANG) naming a language with a catalog, else English."""
    if choice:
        lang = choice.strip().lower().replace("-", "_").split("_")[0]
        if lang not in LANGUAGES:
            raise ValueError(f"no catalog for {choice!r}: one of {', '.join(LANGUAGES)}")
        return lang
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            lang = value.split(".")[0].split("_")[0].lower()
            return lang if lang in LANGUAGES else "en"
    return "en"


def translations(lang: str) -> NullTranslations:
    if lang == "en":
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [lang], domain="messages")


Csrf = Annotated[str, Form()]
"""The CSRF token every form carries (module level: FastAPI resolves annotations here)."""


class Desk:
    """The state behind the pages: the gate, the idle clock, and the profile while unlocked."""

    def __init__(self, home: Path, gate: Gate, idle_seconds: float, lang: str = "en") -> None:
        self.home = home
        self.gate = gate
        self.idle = Idle(idle_seconds)
        self.lang = lang
        self.lock = threading.RLock()
        self.profile: Profile | None = None
        self.reading: Reading | None = None
        self.last_sync: actions.SyncRun | None = None
        self.invite_shown: dict[str, Any] | None = None
        self.wiped = False
        # The store's SQLite connection belongs to one thread: all profile work runs on it.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="desk-profile")

    async def call(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.worker, work)

    def unlock(self, passphrase: bytes) -> None:
        with self.lock:
            if self.profile is not None:
                return
            if self.wiped:
                raise Exit(1, "no profile")
            profile = Profile.open(self.home, secret_passphrase=passphrase)
            self.profile, self.reading = profile, Reading(profile)
            self.idle.touch()

    def close(self) -> None:
        """Close the profile and drop every key and every decrypted state it held."""
        with self.lock:
            if self.profile is not None:
                self.profile.close()
            self.profile = self.reading = None
            self.last_sync = None
            self.invite_shown = None

    @property
    def field(self) -> bool:
        """A field device's profile is open: field mode (no coordinator pages)."""
        return self.profile is not None and self.profile.role is not Role.COORDINATOR

    def shred_key(self) -> None:
        """The panic wipe's first step, at once, not behind a sync running on the worker:
        from now on the Desk answers nothing of the profile, and the key file is shredded
        (the store's contents are ciphertext under it: unreadable from this moment)."""
        self.wiped = True
        self.gate.session = None  # the browser's session ends with the profile
        keyfile = self.home / KEYFILE
        if keyfile.exists():
            _overwrite(keyfile)
            keyfile.unlink()

    def wipe(self) -> float:
        """Panic wipe: close the profile, then `store.wipe` (key file crypto-shredded first)."""
        with self.lock:
            self.close()
            self.wiped = True
            self.gate.session = None
            return wipe(self.home)

    def lock_if_idle(self) -> bool:
        with self.lock:
            if self.profile is not None and self.idle.expired():
                self.close()
                return True
            return False

    @contextlib.contextmanager
    def unlocked(self) -> Iterator[tuple[Profile, Reading]]:
        with self.lock:
            if self.profile is None or self.reading is None:
                raise Locked()
            yield self.profile, self.reading


class Locked(Exception):
    """The profile is closed: the unlock page answers."""


EXPECTED: tuple[type[Exception], ...] = (
    AttachmentFailed, Exit, StoreError, ContentError, InviteError, SyncRefused, NetworkError,
    ServerMisbehaved, RosterError, sqlite3.Error, OSError, ValueError,
)  # fmt: skip


COORDINATOR_PATHS = ("/reports", "/conflicts", "/findings", "/export", "/devices", "/invites")
"""The coordinator's pages: a field device's profile is never offered them."""
FIELD_PATHS = ("/field", "/outbox", "/wipe")
"""Field mode's pages: a coordinator's profile has its own (and no panic wipe here)."""


def _error_text(exc: BaseException) -> tuple[int, str]:
    """What a failure tells the coordinator, like the CLI's `_errors` (never a traceback)."""
    if isinstance(exc, Exit | StoreError | ContentError | InviteError):
        return 400, str(exc)
    if isinstance(exc, SyncRefused):
        return 409, _explain_refusal(exc)
    if isinstance(exc, NetworkError):
        return 502, str(exc)
    if isinstance(exc, ServerMisbehaved | RosterError):
        return 502, f"SERVER MISBEHAVED: {exc}. Nothing was trusted and nothing queued was lost."
    if isinstance(exc, sqlite3.Error | OSError):
        return 500, "the profile's local store cannot be used: check the free space and permissions"
    if isinstance(exc, ValueError):
        return 400, str(exc)
    return 500, f"internal error ({type(exc).__name__}): this is a bug in Sealbox Desk"
