"""Carried files in the Desk (PROTOCOL §23), for both modes: write the outbox to a file to
carry (a download the browser saves, to a USB stick), and read one handed over (an upload).
A coordinator takes it in with no server, a field device queues it to relay on its next
sync; the rules are `clients.local.carrying`, as for `sealbox outbox export` and `import`.

A carried file holds only signed, sealed, padded ciphertext, so the upload may be spooled
to a temporary file (Starlette's form parser does so past 1 MiB) and memory-mapped from
there; the reports' own forms never are (`field_pages._multipart`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from clients.local import carried, carrying
from clients.local.carrying import CarryRefused
from clients.reference_cli.common import Exit

from .findings import N_
from .state import Csrf, Desk

__all__ = ["MAX_CARRIED_UPLOAD", "VERDICT_WORDS", "add_carried_routes"]

PageFn = Callable[..., HTMLResponse]
CheckFn = Callable[[str], None]

MAX_CARRIED_UPLOAD = 4 * 1024**3
"""The largest carried file the Desk takes from the browser (the CLI takes any)."""
_MB = 1024 * 1024
VERDICT_WORDS = (
    N_("accepted"), N_("unvouched"), N_("duplicate"), N_("refused"), N_("unmatched"),
)  # fmt: skip
"""`sync.carry.Status` in words the catalogs translate (the result page shows them)."""


def _limit(text: str) -> int | None:
    """The export form's "at most N MiB" (empty: no limit)."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 10**6:
        raise Exit(1, "the size limit is a whole number of MiB, from 1")
    return int(text) * _MB


def add_carried_routes(app: FastAPI, desk: Desk, page: PageFn, check: CheckFn) -> None:

    @app.get("/carried")
    async def carried_page(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, _):
                outbox = len(profile.device_state().outbox)
                relay = profile.store.count("relay")
                refused = carried.relay_refused(profile.store)
            return page(
                request, "carried.html", outbox=outbox, relay=relay, refused=refused,
                limit_mb=MAX_CARRIED_UPLOAD // _MB,
            )  # fmt: skip

        return await desk.call(work)

    @app.post("/carried/export")
    async def carried_export(
        csrf: Csrf,
        attachments: Annotated[str, Form()] = "",
        max_mb: Annotated[str, Form()] = "",
    ) -> Response:
        check(csrf)
        limit = _limit(max_mb)

        def work() -> carrying.OutboxExport:
            with desk.unlocked() as (profile, _), _refused():
                return carrying.plan_export(profile, attachments=bool(attachments), limit=limit)

        plan = await desk.call(work)

        def body() -> Iterator[bytes]:
            # Off the profile's thread: the plan reads only the sealed copies it holds open.
            with plan:
                yield from plan.pieces()

        name = f"sealbox-{secrets.token_hex(8)}{carrying.SUFFIX}"  # the name tells nothing
        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Content-Length": str(plan.length),
            },
        )

    @app.post("/carried/import")
    async def carried_import(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise Exit(1, "send the file from the Desk's own form")
        if int(declared) > MAX_CARRIED_UPLOAD:
            raise Exit(1, "too large for the Desk: read it with `sealbox import FILE`")
        form = await request.form(max_files=1, max_fields=2)
        try:
            check(str(form.get("csrf", "")))
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise Exit(1, "choose a carried file first")
            spooled = upload.file
            rollover = getattr(spooled, "rollover", None)
            if rollover is not None:
                rollover()  # a real file, to memory-map (ciphertext only)

            def work() -> Response:
                with desk.unlocked() as (profile, reading), _refused():
                    with carrying.opened(spooled) as parsed:
                        if desk.field:
                            relayed, taken = carrying.relay_import(profile, parsed), None
                            verdicts, judged = relayed.verdicts, []
                        else:
                            try:
                                taken = carrying.coordinator_import(profile, parsed)
                            finally:
                                reading.invalidate()
                            relayed, verdicts, judged = None, taken.verdicts, taken.attachments
                        return page(
                            request, "carried_result.html", relayed=relayed, taken=taken,
                            complete=parsed.complete, problems=parsed.problems,
                            items=carrying.item_rows(verdicts),
                            attachments=carrying.attachment_rows(judged),
                        )  # fmt: skip

            return await desk.call(work)
        finally:
            await form.close()


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """`CarryRefused` as the Desk's expected failure (a page that says why)."""
    try:
        yield
    except CarryRefused as exc:
        raise Exit(1, str(exc)) from None
