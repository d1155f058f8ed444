"""Push, changes feed, report graphs, receipts (docs/PROTOCOL.md §8.2-§9)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from server.auth import CoordinatorCaller, OrgId, PushCaller, SignedCaller, SignedRoute
from server.deps import Ctx
from server.errors import ApiError
from server.routes import PROBLEMS
from server.services import feed
from server.services import push as push_service
from sync.errors import ErrorCode
from sync.messages import (
    CBOR_MEDIA_TYPE,
    ChangesPage,
    LogState,
    PushRequest,
    PushResponse,
    PushResult,
    ReceiptList,
    ReportGraph,
    StoredReceipt,
    b64decode,
    decode_push_cbor,
)

router = APIRouter(prefix="/v1/orgs", tags=["sync"], route_class=SignedRoute)

_PUSH_MEDIA_TYPES = ("application/json", CBOR_MEDIA_TYPE)
_Since = Annotated[
    int | None,
    Query(ge=0, le=2**62, description="size of the caller's newest checkpoint (PROTOCOL §17.3)"),
]


async def _push_media_type(request: Request) -> str:
    """The push body's media type, refused (415) unless JSON or CBOR: before any body byte
    is read, since nothing else is parsed as a push (PROTOCOL §8.2)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _PUSH_MEDIA_TYPES:
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            415,
            "a push body is application/json or application/cbor (set Content-Type)",
            headers={"Accept-Post": ", ".join(_PUSH_MEDIA_TYPES)},
            accepted=list(_PUSH_MEDIA_TYPES),
        )
    return media_type


async def _push_envelopes(
    request: Request,
    media_type: Annotated[str, Depends(_push_media_type)],
    _caller: PushCaller,
) -> list[bytes]:
    """The pushed envelopes, from a JSON (`PushRequest`) or a CBOR body (PROTOCOL §8.2).

    Depends on the caller, so the signature (and its digest) is verified before parsing.
    """
    body = await request.body()  # already read (and cached) by the signature check
    try:
        if media_type == CBOR_MEDIA_TYPE:
            return decode_push_cbor(body)
        return PushRequest.model_validate_json(body).envelopes
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": str(exc)}]) from None


_PUSH_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": PushRequest.model_json_schema()},
        CBOR_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "required": ["envelopes"],
                "properties": {"envelopes": {"type": "array", "items": {"type": "string"}}},
                "description": "the same request, envelopes as CBOR byte strings",
            }
        },
    },
}


@router.post(
    "/{org}/push",
    response_model=PushResponse,
    responses=PROBLEMS,
    openapi_extra={"requestBody": _PUSH_BODY},
)
def push(
    ctx: Ctx,
    org_id: OrgId,
    caller: PushCaller,
    envelopes: Annotated[list[bytes], Depends(_push_envelopes)],
    since: _Since = None,
) -> Response:
    """Store a batch of envelopes: one result per item in request order, and a signed receipt.

    The body is JSON (envelopes as base64url) or, with ``Content-Type: application/cbor``,
    CBOR with the envelopes as byte strings (a quarter fewer bytes, nothing to decode).
    With ``since=M`` the answer proves the receipt's checkpoint consistent with size M.
    """
    outcome = push_service.push(
        engine=ctx.engine,
        settings=ctx.settings,
        server_key=ctx.server_key,
        pool=ctx.verify_pool,
        caller=caller,
        envelopes=envelopes,
        now=int(time.time()),
        since=since,
    )
    return _push_answer(ctx, outcome)


@router.post(
    "/{org}/relay",
    response_model=PushResponse,
    responses=PROBLEMS,
    openapi_extra={"requestBody": _PUSH_BODY},
)
def relay(
    ctx: Ctx,
    org_id: OrgId,
    caller: PushCaller,
    envelopes: Annotated[list[bytes], Depends(_push_envelopes)],
    since: _Since = None,
) -> Response:
    """Store envelopes of other devices carried by this one (a relay push, PROTOCOL §23.3).

    The same body and answer as a push; each envelope is judged under its own author's key
    and chain rules.  Only an admitted, unrevoked member may relay.
    """
    outcome = push_service.relay(
        engine=ctx.engine,
        settings=ctx.settings,
        server_key=ctx.server_key,
        caller=caller,
        envelopes=envelopes,
        now=int(time.time()),
        since=since,
    )
    return _push_answer(ctx, outcome)


def _push_answer(ctx: Ctx, outcome: push_service.PushOutcome) -> Response:
    for status, count in push_service.status_counts(outcome.plan).items():
        ctx.metrics.push_items.labels(status.value).inc(count)
    for heads in outcome.plan.heads.values():
        ctx.metrics.report_heads.observe(len(heads))
    response = PushResponse(
        results=[
            PushResult(
                envelope_id=o.envelope_id,
                status=o.status,
                retryable=o.status.retryable,
                server_seq=o.server_seq,
                missing=list(o.missing) if o.missing is not None else None,
                heads=list(o.heads) if o.heads is not None else None,
                detail=o.detail,
            )
            for o in outcome.plan.outcomes
        ],
        receipt=outcome.receipt,
        consistency=outcome.consistency,
    )
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")


@router.get(
    "/{org}/changes",
    response_model=ChangesPage,
    responses={
        **PROBLEMS,
        200: {"content": {"application/cbor": {}}, "description": "a page (JSON or CBOR)"},
    },
)
def changes(
    ctx: Ctx,
    org_id: OrgId,
    caller: CoordinatorCaller,
    cursor: Annotated[str, Query(max_length=100)] = "",
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    accept: Annotated[str | None, Header(max_length=200)] = None,
    since: _Since = None,
) -> Response:
    """A page of the organisation's feed after ``cursor`` (coordinators), with the log's
    checkpoint and proofs (PROTOCOL §17.3).

    With ``Accept: application/cbor`` the same page comes as CBOR with raw bytes.
    """
    top = ctx.settings.max_feed_items
    request = feed.PageRequest(
        org_id=org_id,
        cursor=cursor,
        limit=min(limit or top, top),
        since=since or 0,
        server_key=ctx.server_key,
        now=int(time.time()),
    )
    if "application/cbor" in (accept or ""):
        return Response(
            feed.changes_cbor(engine=ctx.engine, request=request), media_type="application/cbor"
        )
    return Response(
        feed.changes_json(engine=ctx.engine, request=request), media_type="application/json"
    )


@router.get("/{org}/log", response_model=LogState, responses=PROBLEMS)
def log(ctx: Ctx, org_id: OrgId, caller: SignedCaller, since: _Since = None) -> LogState:
    """The current checkpoint of the organisation's log and a consistency proof from the
    size ``since`` the caller holds (any member; PROTOCOL §17.3)."""
    checkpoint, consistency = feed.log_state(
        engine=ctx.engine,
        org_id=org_id,
        since=since or 0,
        server_key=ctx.server_key,
        now=int(time.time()),
    )
    return LogState(checkpoint=checkpoint, consistency=consistency)


@router.get("/{org}/reports/{report}", response_model=ReportGraph, responses=PROBLEMS)
def report_graph(
    ctx: Ctx,
    org_id: OrgId,
    caller: CoordinatorCaller,
    report: Annotated[str, Path(max_length=64, description="report id, base64url")],
) -> Response:
    """Every envelope of one report and its current heads (coordinators)."""
    try:
        report_id = b64decode(report)
    except ValueError:
        report_id = b""
    if len(report_id) != 16:
        raise ApiError(ErrorCode.NOT_FOUND, 404, "no such report")
    body = feed.report_graph_json(engine=ctx.engine, org_id=org_id, report_id=report_id)
    return Response(body, media_type="application/json")


@router.get("/{org}/receipts", response_model=ReceiptList, responses=PROBLEMS)
def receipts(
    ctx: Ctx,
    org_id: OrgId,
    caller: SignedCaller,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReceiptList:
    """The caller's own receipts with id > ``after``."""
    stored, more = feed.receipts(
        engine=ctx.engine, org_id=org_id, device_id=caller.device_id, after=after, limit=limit
    )
    return ReceiptList(
        receipts=[StoredReceipt(id=r.id, receipt=r.document) for r in stored], more=more
    )
