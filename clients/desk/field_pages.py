"""Field mode's pages: the field home, a new report with files, the outbox, panic wipe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)

from clients.reference_cli.common import Exit

from . import actions
from .state import Csrf, Desk, Locked

PageFn = Callable[..., HTMLResponse]
PlainFn = Callable[[int, str], Response]
CheckFn = Callable[[str], None]


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


def add_field_routes(app: FastAPI, desk: Desk, page: PageFn, check: CheckFn) -> None:

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
