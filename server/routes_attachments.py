"""Attachment upload and download routes (docs/PROTOCOL.md §13.5): parse, call, map.

Every route is signed (`server.auth.SignedCaller`); downloads and the organisation's
upload list are for coordinators only.  Chunk bodies are raw bytes
(``application/octet-stream``); everything else is JSON.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from server.attachments import (
    AttachmentService,
    AttachmentSettings,
    complete_upload,
    create_upload,
    list_uploads,
    open_chunk,
    put_chunk,
    upload_status,
)
from server.auth import Caller, CoordinatorCaller, OrgId, SignedCaller, SignedRoute
from server.deps import Ctx
from server.errors import ApiError
from server.routes import PROBLEMS
from sync.attachments import (
    AttachmentReason,
    ChunkStored,
    CompleteUploadRequest,
    CreateUploadRequest,
    UploadList,
    UploadStatus,
)
from sync.errors import ErrorCode
from sync.messages import b64decode

__all__ = ["router"]

router = APIRouter(prefix="/v1/orgs", tags=["attachments"], route_class=SignedRoute)


def get_service(request: Request) -> AttachmentService:
    """The app's attachment service, built once from ``SEALBOX_*`` (tests may preset it)."""
    service: AttachmentService | None = getattr(request.app.state, "attachments", None)
    if service is None:
        ctx = request.app.state.ctx
        service = AttachmentService.from_settings(AttachmentSettings(), ctx.settings.data_dir)
        request.app.state.attachments = service
    return service


Service = Annotated[AttachmentService, Depends(get_service)]


def _upload_id(
    upload: Annotated[str, Path(max_length=64, description="upload (attachment) id, base64url")],
) -> bytes:
    try:
        raw = b64decode(upload)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise ApiError(ErrorCode.NOT_FOUND, 404, "no such upload", reason="unknown_upload")
    return raw


UploadId = Annotated[bytes, Depends(_upload_id)]


def _length_guard(request: Request) -> None:
    """Refuse an oversized chunk before its body is read (runs before the signature check).

    Content-Length is read from the request, not declared as a parameter: it is not part of
    the API's schema (clients' HTTP libraries set it)."""
    service = get_service(request)
    limit = service.settings.max_chunk_bytes
    raw = request.headers.get("content-length", "")
    content_length = int(raw) if raw.isdigit() and len(raw) < 20 else None
    if content_length is None or content_length > limit:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            413,
            "a chunk needs a Content-Length of at most max_chunk_bytes",
            reason=AttachmentReason.TOO_LARGE.value,
            max_chunk_bytes=limit,
        )


async def _body(request: Request) -> bytes:
    return await request.body()


def _active(caller: Caller) -> Caller:
    """Uploads are for devices admitted in the roster and not revoked (PROTOCOL §13.5.1)."""
    if caller.state == "revoked":
        raise ApiError(ErrorCode.DEVICE_REVOKED, 403, "the device is revoked")
    if caller.state != "admitted":
        raise ApiError(ErrorCode.FORBIDDEN, 403, "the device is not admitted in the roster yet")
    return caller


def _json(model: UploadStatus | UploadList | ChunkStored, status: int = 200) -> Response:
    return Response(
        model.model_dump_json(exclude_none=True), status_code=status, media_type="application/json"
    )


@router.post("/{org}/attachments", response_model=UploadStatus, responses=PROBLEMS, status_code=201)
def create(
    body: CreateUploadRequest, ctx: Ctx, service: Service, org_id: OrgId, caller: SignedCaller
) -> Response:
    """Declare an upload (201), or get the existing one's status again (200)."""
    status, created = create_upload(
        engine=ctx.engine,
        service=service,
        org_id=org_id,
        device_id=_active(caller).device_id,
        upload_id=body.upload_id,
        chunk_size=body.chunk_size,
        chunk_count=body.chunk_count,
        total_size=body.total_size,
        now=int(time.time()),
    )
    return _json(status, 201 if created else 200)


@router.get("/{org}/attachments", response_model=UploadList, responses=PROBLEMS)
def uploads(
    ctx: Ctx,
    service: Service,
    org_id: OrgId,
    caller: CoordinatorCaller,
    state: Literal["pending", "complete"] | None = None,
    after: Annotated[str, Query(max_length=64, description="upload id to list after")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> Response:
    """A page of the organisation's uploads and their states, by id (coordinators)."""
    try:
        after_id = b64decode(after)
    except ValueError:
        raise ApiError(ErrorCode.VALIDATION_FAILED, 422, "after is an upload id") from None
    found, more = list_uploads(
        engine=ctx.engine,
        service=service,
        org_id=org_id,
        state=state,
        after=after_id,
        limit=limit,
    )
    return _json(UploadList(uploads=found, more=more))


@router.get("/{org}/attachments/{upload}", response_model=UploadStatus, responses=PROBLEMS)
def status(
    ctx: Ctx, service: Service, org_id: OrgId, upload_id: UploadId, caller: SignedCaller
) -> Response:
    """Which chunks the server holds (the uploader, or a coordinator)."""
    return _json(
        upload_status(
            engine=ctx.engine,
            service=service,
            org_id=org_id,
            upload_id=upload_id,
            device_id=caller.device_id,
            is_coordinator=caller.is_coordinator,
        )
    )


@router.put(
    "/{org}/attachments/{upload}/chunks/{index}",
    response_model=ChunkStored,
    responses=PROBLEMS,
    dependencies=[Depends(_length_guard)],
)
def put(
    ctx: Ctx,
    service: Service,
    org_id: OrgId,
    upload_id: UploadId,
    index: Annotated[int, Path(ge=0, le=2**32)],
    sha256: Annotated[str, Query(max_length=64, description="SHA-256 of the chunk, base64url")],
    caller: SignedCaller,
    data: Annotated[bytes, Depends(_body)],
) -> Response:
    """Store one sealed chunk (201 created, 200 already stored)."""
    try:
        digest = b64decode(sha256)
    except ValueError:
        digest = b""
    created = put_chunk(
        engine=ctx.engine,
        service=service,
        org_id=org_id,
        device_id=_active(caller).device_id,
        upload_id=upload_id,
        index=index,
        sha256=digest,
        data=data,
        now=int(time.time()),
    )
    result = ChunkStored(index=index, status="created" if created else "duplicate")
    return _json(result, 201 if created else 200)


@router.post(
    "/{org}/attachments/{upload}/complete", response_model=UploadStatus, responses=PROBLEMS
)
def complete(
    body: CompleteUploadRequest,
    ctx: Ctx,
    service: Service,
    org_id: OrgId,
    upload_id: UploadId,
    caller: SignedCaller,
) -> Response:
    """Check the whole upload against the declared manifest; it becomes downloadable."""
    return _json(
        complete_upload(
            engine=ctx.engine,
            service=service,
            org_id=org_id,
            device_id=_active(caller).device_id,
            upload_id=upload_id,
            chunk_count=body.chunk_count,
            total_size=body.total_size,
            sha256=body.sha256,
            now=int(time.time()),
        )
    )


@router.get(
    "/{org}/attachments/{upload}/chunks/{index}",
    responses={**PROBLEMS, 200: {"content": {"application/octet-stream": {}}}},
)
def download(
    ctx: Ctx,
    service: Service,
    org_id: OrgId,
    upload_id: UploadId,
    index: Annotated[int, Path(ge=0, le=2**32)],
    caller: CoordinatorCaller,
) -> StreamingResponse:
    """One sealed chunk of a complete upload, streamed (coordinators)."""
    size, pieces = open_chunk(
        engine=ctx.engine, service=service, org_id=org_id, upload_id=upload_id, index=index
    )
    return StreamingResponse(
        pieces,
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
    )
