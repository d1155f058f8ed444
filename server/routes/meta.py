"""Server description, liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from crypto import PROTOCOL_VERSION, SUITE_ID
from server.deps import Ctx
from server.errors import ApiError
from server.services import health
from sync.errors import ErrorCode
from sync.messages import Limits, ServerInfo

router = APIRouter()


@router.get("/v1/server", response_model=ServerInfo, tags=["server"])
def server_info(ctx: Ctx) -> ServerInfo:
    """Protocol version, suite, the server's receipt key and the limits (no auth)."""
    s = ctx.settings
    return ServerInfo(
        protocol_version=PROTOCOL_VERSION,
        suite=SUITE_ID,
        server_key=ctx.server_key.verify_key.raw,
        limits=Limits(
            max_batch_items=s.max_batch_items,
            max_batch_bytes=s.max_batch_bytes,
            max_envelope_bytes=s.max_envelope_bytes,
            max_feed_items=s.max_feed_items,
            replay_window_seconds=s.replay_window_seconds,
            device_requests_per_minute=s.device_requests_per_minute,
            org_requests_per_minute=s.org_requests_per_minute,
            org_quota_bytes=s.org_quota_bytes,
        ),
    )


@router.get("/healthz", tags=["operations"])
def healthz() -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", tags=["operations"])
def readyz(ctx: Ctx) -> JSONResponse:
    """Readiness: the database answers and its schema is at the migration head."""
    problem = health.readiness_problem(ctx.engine)
    if problem is not None:
        raise ApiError(ErrorCode.NOT_READY, 503, problem, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready"})


@router.get("/metrics", tags=["operations"], response_class=Response)
def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
