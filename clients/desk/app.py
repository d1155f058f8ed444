"""The Desk's routes: server-rendered pages over `reading` and `actions`, behind `edge`.

One profile, one coordinator, one browser session. Profile work is serialised by one lock
(the store and the merged view are not thread-safe); the event loop only dispatches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import jinja2
from babel.support import NullTranslations, Translations
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from clients.local.profile import Profile
from clients.local.store import KEYFILE, StoreError, _overwrite, wipe
from clients.local.transport import NetworkError
from clients.reference_cli.attachments import AttachmentFailed, attachment_state
from clients.reference_cli.common import Exit, _explain_refusal, _parse_duration
from sync.client import ServerMisbehaved, SyncRefused
from sync.invite import InviteError
from sync.report import ContentError
from sync.roster import Role, RosterError

from . import actions
from .edge import COOKIE, LOOPBACK, SAFE_METHODS, SECURITY_HEADERS, Gate, Idle
from .findings import explain, state_label
from .reading import VERIFICATION_STATES, Filters, Reading, value_text

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


async def _multipart(request: Request, limit: int) -> list[tuple[str, str | None, bytes]]:
    """A multipart form read into memory only: (name, filename or None, bytes) per part.

    Starlette's form parser spools files over 1 MB to a temporary file (plaintext on disk);
    this reads the body in memory, bounded by ``limit``, and parses it there.
    """
    import email.parser
    import email.policy

    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise Exit(1, "Incomplete form.")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise Exit(1, "too large: a report's files may be 64 MiB in all")
    head = b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + bytes(body))
    del body
    out: list[tuple[str, str | None, bytes]] = []
    if not message.is_multipart():
        raise Exit(1, "Incomplete form.")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True) or b""
        if not isinstance(data, bytes):
            raise Exit(1, "Incomplete form.")
        out.append((name, part.get_filename(), data))
    return out


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


def create_app(desk: Desk) -> FastAPI:
    gate = desk.gate
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(translations(desk.lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["hexshort"] = lambda b: (b.hex() if isinstance(b, bytes) else str(b))[:12]
    env.filters["when"] = lambda t: (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(t))) if t else ""
    )
    env.globals["value_text"] = value_text
    env.globals["state_label"] = state_label

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def watch() -> None:
            while True:
                await asyncio.sleep(min(5.0, max(desk.idle.seconds / 4, 0.2)))
                await desk.call(desk.lock_if_idle)

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            await desk.call(desk.close)

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(
        request: Request, name: str, status: int = 200, *, public: bool = False, **context: Any
    ) -> HTMLResponse:
        """A rendered page; ``public`` ones (no session yet) hold no token and no profile data."""
        unlocked = desk.profile is not None and not public
        html = env.get_template(name).render(
            lang=desk.lang,
            csrf="" if public else gate.csrf,
            unlocked=unlocked,
            field_mode=unlocked and desk.field,
            org=(desk.profile.meta.get("name", "") if desk.profile and unlocked else ""),
            path=request.url.path,
            idle_ms=int(desk.idle.seconds * 1000) + 500,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def plain(status: int, text: str) -> Response:
        return PlainTextResponse(text, status_code=status)

    @app.middleware("http")
    async def edge(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await _edge(request, call_next)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    async def _edge(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        peer = request.client.host if request.client else None
        if peer not in LOOPBACK:
            return plain(403, "Sealbox Desk answers this computer only.")
        if not gate.host_ok(request.headers.get("host")):
            return plain(421, "Wrong Host: open the address `sealbox desk` printed.")
        if request.method not in SAFE_METHODS and not gate.origin_ok(
            request.headers.get("origin"), request.headers.get("sec-fetch-site")
        ):
            return plain(403, "Refused: this request did not come from Sealbox Desk's own pages.")
        path = request.url.path
        if desk.wiped and not path.startswith("/static/"):
            return page(request, "wiped.html", 200, public=True)
        if path.startswith("/static/") or path == "/login":
            return await call_next(request)
        if not gate.session_ok(request.cookies.get(COOKIE)):
            return page(request, "error.html", 403, public=True, message=None, no_session=True)
        if await desk.call(desk.lock_if_idle) and path != "/unlock":
            return RedirectResponse("/unlock", status_code=303)
        desk.idle.touch()
        if desk.profile is not None:
            coordinator_page = path == "/" or path.startswith(COORDINATOR_PATHS)
            if desk.field and path == "/":
                return RedirectResponse("/field", status_code=303)
            if (desk.field and coordinator_page) or (
                not desk.field and path.startswith(FIELD_PATHS)
            ):
                text = "This page is not offered to this profile."
                return page(request, "error.html", 403, message=text, no_session=False)
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - a bug: a page, and nothing in any log
            status, text = _error_text(exc)
            return page(request, "error.html", status, message=text, no_session=False)

    @app.exception_handler(Locked)
    async def locked(request: Request, _: Locked) -> Response:
        return RedirectResponse("/unlock", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        text = "Not found." if exc.status_code == 404 else "This request cannot be answered."
        return page(request, "error.html", exc.status_code, message=text, no_session=False)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, _: RequestValidationError) -> Response:
        return page(request, "error.html", 400, message="Incomplete form.", no_session=False)

    async def failure(request: Request, exc: Exception) -> Response:
        status, text = _error_text(exc)
        return page(request, "error.html", status, message=text, no_session=False)

    # Expected failures are answered where they happen; anything else (a bug) by `edge`,
    # as the same page, so that no traceback (which may quote plaintext) reaches a log.
    for expected in EXPECTED:
        app.add_exception_handler(expected, failure)

    def check(csrf: str) -> None:
        if not gate.csrf_ok(csrf):
            raise Exit(1, "This form has expired (wrong CSRF token): reload the page.")

    # --- the session -----------------------------------------------------------------------
    @app.get("/login")
    def login(request: Request, token: str = "") -> Response:
        session = gate.exchange(token)
        if session is None:
            return page(request, "error.html", 403, public=True, message=None, no_session=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE, session, httponly=True, samesite="strict", path="/", secure=False
        )
        return response

    @app.get("/unlock")
    def unlock_page(request: Request) -> Response:
        if desk.profile is not None:
            return RedirectResponse("/", status_code=303)
        return page(request, "unlock.html", error="")

    @app.post("/unlock")
    async def unlock(
        request: Request, csrf: Csrf, passphrase: Annotated[str, Form()] = ""
    ) -> Response:
        def work() -> Response:
            check(csrf)
            try:
                desk.unlock(passphrase.encode())
            except StoreError as exc:
                return page(request, "unlock.html", 403, error=str(exc))
            return RedirectResponse("/", status_code=303)

        return await desk.call(work)

    @app.post("/lock")
    async def lock(csrf: Csrf) -> Response:
        def work() -> Response:
            check(csrf)
            desk.close()
            return RedirectResponse("/unlock", status_code=303)

        return await desk.call(work)

    # --- reading ---------------------------------------------------------------------------
    @app.get("/")
    async def reports(request: Request) -> Response:
        def work() -> Response:
            filters = Filters.from_query(request.query_params)
            with desk.unlocked() as (_, reading):
                rows = reading.rows(filters)
                return page(
                    request,
                    "reports.html",
                    rows=rows,
                    filters=filters,
                    states=VERIFICATION_STATES,
                    devices=reading.devices_seen(),
                    query=urlencode(filters.query()),
                    total=reading.total(),
                    findings=len(reading.findings()),
                )

        return await desk.call(work)

    @app.get("/reports/{report_id}")
    async def report(request: Request, report_id: str) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, reading):
                row = reading.report(report_id)
                if row is None:
                    raise StarletteHTTPException(404)
                revisions: dict[bytes, tuple[bytes, int]] = {}
                for f in row.state.fields:
                    for w in f.writes:
                        revisions[w.revision] = (w.author, w.client_time)
                for n in row.state.notes:
                    revisions[n.revision] = (n.author, n.client_time)
                history = sorted(revisions.items(), key=lambda kv: kv[1][1])
                return page(
                    request,
                    "report.html",
                    row=row,
                    history=history,
                    explain=explain,
                    inline=actions.INLINE_TYPES,
                    states={
                        a.attachment_id: attachment_state(profile, a.attachment_id)["state"]
                        for a in row.state.attachments
                    },
                )

        return await desk.call(work)

    @app.get("/reports/{report_id}/attachments/{attachment_id}")
    async def attachment(report_id: str, attachment_id: str) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, reading):
                row = reading.report(report_id)
                listed = row.state.attachments if row is not None else ()
                entry = next((a for a in listed if a.attachment_id.hex() == attachment_id), None)
                if entry is None:
                    raise StarletteHTTPException(404)
                if entry.media_type not in actions.INLINE_TYPES:
                    raise StarletteHTTPException(415)
                data = actions.attachment_bytes(profile, entry)
            return Response(
                data,
                media_type=entry.media_type,
                headers={"Content-Disposition": 'inline; filename="attachment"'},
            )

        return await desk.call(work)

    @app.post("/reports/{report_id}/edit")
    async def edit(
        report_id: str,
        csrf: Csrf,
        field: Annotated[str, Form(max_length=200)] = "",
        value: Annotated[str, Form(max_length=actions.MAX_TEXT)] = "",
        note: Annotated[str, Form(max_length=actions.MAX_TEXT)] = "",
    ) -> Response:
        def work() -> Response:
            check(csrf)
            with desk.unlocked() as (profile, reading):
                row = reading.report(report_id)
                if row is None:
                    raise StarletteHTTPException(404)
                actions.edit(profile, row.state, field.strip(), value, note)
                reading.invalidate()
            return RedirectResponse(f"/reports/{row.report_id}", status_code=303)

        return await desk.call(work)

    @app.get("/conflicts")
    async def conflicts(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (_, reading):
                rows = [r for r in reading.rows() if r.state.conflicts]
                return page(request, "conflicts.html", rows=rows)

        return await desk.call(work)

    @app.post("/reports/{report_id}/resolve")
    async def resolve(request: Request, report_id: str) -> Response:
        form = await request.form()
        check(str(form.get("csrf", "")))

        def work() -> Response:
            choices: dict[str, str] = {}
            with desk.unlocked() as (profile, reading):
                row = reading.report(report_id)
                if row is None:
                    raise StarletteHTTPException(404)
                for i, f in enumerate(row.state.conflicts):
                    pick = str(form.get(f"pick-{i}", ""))
                    if pick == "other":
                        choices[f.name] = str(form.get(f"other-{i}", ""))[: actions.MAX_TEXT]
                    elif pick.isdigit() and int(pick) < len(f.writes):
                        choices[f.name] = value_text(f.writes[int(pick)].value)
                actions.resolve(profile, row.state, choices)
                reading.invalidate()
            return RedirectResponse(f"/reports/{row.report_id}", status_code=303)

        return await desk.call(work)

    @app.get("/findings")
    async def findings(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, reading):
                found = reading.findings()
                warnings = list(profile.meta.get("warnings", []))
                return page(
                    request, "findings.html", found=found, warnings=warnings, explain=explain
                )

        return await desk.call(work)

    @app.get("/export")
    async def export(request: Request) -> Response:
        def work() -> Response:
            filters = Filters.from_query(request.query_params)
            fmt = "csv" if request.query_params.get("format") == "csv" else "json"
            unverified = request.query_params.get("include_unverified") == "1"
            with desk.unlocked() as (_, reading):
                text = actions.export(reading.exported(filters, include_unverified=unverified), fmt)
            media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
            return Response(
                text,
                media_type=media,
                headers={"Content-Disposition": f'attachment; filename="sealbox-reports.{fmt}"'},
            )

        return await desk.call(work)

    # --- devices and invites -----------------------------------------------------------------
    @app.get("/devices")
    async def devices(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, _):
                listed = actions.devices(profile)
                return page(request, "devices.html", devices=listed)

        return await desk.call(work)

    @app.post("/devices/{device_id}/revoke")
    async def revoke(device_id: str, csrf: Csrf) -> Response:
        def work() -> Response:
            check(csrf)
            with desk.unlocked() as (profile, reading):
                actions.revoke(profile, device_id.lower())
                reading.invalidate()
            return RedirectResponse("/devices", status_code=303)

        return await desk.call(work)

    @app.get("/invites")
    async def invites(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, _):
                shown, desk.invite_shown = desk.invite_shown, None  # the code is shown once
                qr = ""
                if shown is not None:
                    import segno

                    qr = segno.make(shown["code"], error="m").svg_inline(scale=4, omitsize=True)
                return page(
                    request, "invites.html", invites=actions.invites(profile), shown=shown, qr=qr
                )

        return await desk.call(work)

    @app.post("/invites")
    async def invite_create(
        csrf: Csrf,
        role: Annotated[str, Form()] = "field",
        expires: Annotated[str, Form()] = "24h",
    ) -> Response:
        def work() -> Response:
            check(csrf)
            seconds = _parse_duration(expires)
            if not 0 < seconds <= 30 * 86400:
                raise Exit(1, "an invite lives more than zero and at most 30 days, e.g. 24h or 7d")
            with desk.unlocked() as (profile, _):
                desk.invite_shown = actions.create_invite(profile, Role(role), seconds)
            return RedirectResponse("/invites", status_code=303)

        return await desk.call(work)

    @app.post("/invites/{invite_id}/cancel")
    async def invite_cancel(invite_id: str, csrf: Csrf) -> Response:
        def work() -> Response:
            check(csrf)
            with desk.unlocked() as (profile, _):
                actions.cancel_invite(profile, invite_id.lower())
            return RedirectResponse("/invites", status_code=303)

        return await desk.call(work)

    # --- sync --------------------------------------------------------------------------------
    @app.get("/sync")
    async def sync_page(request: Request) -> Response:
        # Not on the worker: while a sync runs there, this page shows how far it is.
        if desk.profile is None:
            raise Locked()
        return page(request, "sync.html", run=desk.last_sync, explain=explain)

    @app.post("/sync")
    async def sync(csrf: Csrf) -> Response:
        check(csrf)
        if desk.profile is None:
            raise Locked()
        if desk.last_sync is None or desk.last_sync.done:
            run = desk.last_sync = actions.SyncRun()

            def work() -> None:
                try:
                    with desk.unlocked() as (profile, reading):
                        try:
                            actions.sync(profile, run)
                        finally:
                            reading.invalidate()
                except Exception as exc:  # noqa: BLE001 - shown on the sync page
                    run.error = (
                        "the Desk locked" if isinstance(exc, Locked) else _error_text(exc)[1]
                    )
                finally:
                    run.done = True

            desk.worker.submit(work)  # the page follows it (GET /sync refreshes itself)
        return RedirectResponse("/sync", status_code=303)

    # --- field mode ----------------------------------------------------------------------------
    @app.get("/field")
    async def field_home(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, _):
                box = actions.outbox(profile)
                label = profile.meta.get("label") or ""
                return page(request, "field.html", box=box, label=label, created="")

        return await desk.call(work)

    @app.get("/field/new")
    def field_new_page(request: Request) -> Response:
        if desk.profile is None:
            raise Locked()
        return page(request, "field_new.html", rows=3)

    @app.post("/field/new")
    async def field_new(request: Request) -> Response:
        parts = await _multipart(request, actions.MAX_UPLOAD)
        text = {n: d for n, f, d in parts if f is None}
        check(text.get("csrf", b"").decode("utf-8", "replace"))
        names = [d.decode() for n, f, d in parts if f is None and n == "field-name"]
        values = [d.decode() for n, f, d in parts if f is None and n == "field-value"]
        note = text.get("note", b"").decode()
        if len(note) > actions.MAX_TEXT or any(len(v) > actions.MAX_TEXT for v in values):
            raise Exit(1, "too long: a value or note may be 100,000 characters")
        files = [(f, d) for n, f, d in parts if n == "files" and f]
        del parts, text

        def work() -> Response:
            with desk.unlocked() as (profile, _):
                report = actions.new_report(
                    profile, list(zip(names, values, strict=True)), note, files
                )
            return RedirectResponse(f"/outbox?written={report.hex()}", status_code=303)

        return await desk.call(work)

    @app.get("/outbox")
    async def outbox(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, _):
                box = actions.outbox(profile)
            written = request.query_params.get("written", "")
            written = written if len(written) == 32 and written.isalnum() else ""
            return page(request, "outbox.html", box=box, written=written)

        return await desk.call(work)

    @app.get("/wipe")
    def wipe_page(request: Request) -> Response:
        if desk.profile is None:
            raise Locked()
        return page(request, "wipe.html")

    @app.post("/wipe")
    async def wipe_now(request: Request, csrf: Csrf) -> Response:
        check(csrf)
        if desk.profile is None:
            raise Locked()
        desk.shred_key()
        # The rest (close the store, delete every file) on the profile's thread; if a sync
        # holds it, the page does not wait for it: the wipe completes when the sync stops.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(desk.call(desk.wipe)), 0.8)
        return page(request, "wiped.html", 200, public=True)

    return app


def passphrase_from_env() -> bytes | None:
    value = os.environ.get("SEALBOX_PASSPHRASE")
    return value.encode() if value else None
