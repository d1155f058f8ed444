"""The coordinator's pages: reports, a report, conflicts, findings, export, devices, invites,
sync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from clients.reference_cli.attachments import attachment_state
from clients.reference_cli.common import Exit, _parse_duration
from sync.roster import Role

from . import actions
from .findings import explain
from .reading import VERIFICATION_STATES, Filters, Reading, Row, value_text
from .state import Csrf, Desk, Locked, _error_text

PAGE_SIZE = 100
"""Reports per page of the reports table."""

PageFn = Callable[..., HTMLResponse]
PlainFn = Callable[[int, str], Response]
CheckFn = Callable[[str], None]


def add_coordinator_routes(
    app: FastAPI, desk: Desk, page: PageFn, check: CheckFn, plain: PlainFn
) -> None:

    @app.get("/")
    async def reports(request: Request) -> Response:
        def work() -> Response:
            filters = Filters.from_query(request.query_params)
            number = _page_number(request.query_params.get("page", ""))
            with desk.unlocked() as (_, reading):
                matches, rows = reading.page(filters, (number - 1) * PAGE_SIZE, PAGE_SIZE)
                pages = max(1, -(-matches // PAGE_SIZE))
                if number > pages:  # past the end (an old link): the last page
                    number = pages
                    rows = reading.page(filters, (number - 1) * PAGE_SIZE, PAGE_SIZE)[1]
                return page(
                    request,
                    "reports.html",
                    rows=rows,
                    matches=matches,
                    number=number,
                    pages=pages,
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
                row = _report_or_404(reading, report_id)
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

    @app.get("/attachments/{report_id}/{attachment_id}")
    async def attachment(report_id: str, attachment_id: str) -> Response:
        def work() -> Response:
            with desk.unlocked() as (profile, reading):
                listed = _report_or_404(reading, report_id).state.attachments
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
                row = _report_or_404(reading, report_id)
                actions.edit(profile, row.state, field.strip(), value, note)
                reading.invalidate()
            return RedirectResponse(f"/reports/{row.report_id}", status_code=303)

        return await desk.call(work)

    @app.get("/conflicts")
    async def conflicts(request: Request) -> Response:
        def work() -> Response:
            with desk.unlocked() as (_, reading):
                rows = reading.rows(Filters(conflict="yes"))
                return page(request, "conflicts.html", rows=rows)

        return await desk.call(work)

    @app.post("/reports/{report_id}/resolve")
    async def resolve(request: Request, report_id: str) -> Response:
        form = await request.form()
        check(str(form.get("csrf", "")))

        def work() -> Response:
            choices: dict[str, str] = {}
            with desk.unlocked() as (profile, reading):
                row = _report_or_404(reading, report_id)
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

    @app.post("/reports/{report_id}/evidence")
    async def evidence(csrf: Csrf, report_id: str) -> Response:
        def work() -> Response:
            check(csrf)
            with desk.unlocked() as (profile, reading):
                row = _report_or_404(reading, report_id)
                data = actions.evidence_bundle(profile, row.state.report)
            name = f"sealbox-evidence-{row.report_id[:12]}.cbor"
            return Response(
                data,
                media_type="application/cbor",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
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
                listed, offline = actions.invites(profile)
                return page(
                    request, "invites.html", invites=listed, offline=offline, shown=shown, qr=qr
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


def _page_number(text: str) -> int:
    """The reports table's ``page`` parameter: a number from 1 (anything else is page 1)."""
    return int(text) if text.isdigit() and 0 < int(text) < 10**9 else 1


def _report_or_404(reading: Reading, report_id: str) -> Row:
    """The report ``report_id`` names, or a 404 (an unknown, malformed or foreign id)."""
    row = reading.report(report_id)
    if row is None:
        raise StarletteHTTPException(404)
    return row
