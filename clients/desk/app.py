"""The Desk's routes: server-rendered pages over `reading` and `actions`, behind `edge`.

One profile, one coordinator, one browser session. Profile work is serialised by one lock
(the store and the merged view are not thread-safe); the event loop only dispatches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import jinja2
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

from clients.local.store import StoreError
from clients.reference_cli.common import Exit

from .carried_pages import add_carried_routes
from .coordinator_pages import add_coordinator_routes
from .edge import ATTACHMENTS, COOKIE, LOOPBACK, SAFE_METHODS, security_headers
from .field_pages import add_field_routes
from .findings import state_label
from .reading import value_text
from .state import (
    COORDINATOR_PATHS,
    EXPECTED,
    FIELD_PATHS,
    HERE,
    LANGUAGES,
    Csrf,
    Desk,
    Locked,
    _error_text,
    language_of,
    translations,
)

__all__ = ["LANGUAGES", "Desk", "create_app", "language_of", "passphrase_from_env", "translations"]


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
        framed = request.url.path.startswith(ATTACHMENTS) and response.headers.get(
            "content-type", ""
        ).startswith("application/pdf")
        for name, value in security_headers(gate.port, framed=framed).items():
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
    add_coordinator_routes(app, desk, page, check, plain)
    add_field_routes(app, desk, page, check)
    add_carried_routes(app, desk, page, check)

    return app


def passphrase_from_env() -> bytes | None:
    value = os.environ.get("SEALBOX_PASSPHRASE")
    return value.encode() if value else None
