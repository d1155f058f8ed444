"""Server description, liveness, readiness and metrics."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response

from crypto import PROTOCOL_VERSION, SUITE_ID
from server.deps import Ctx
from server.errors import ApiError
from server.routes import PROBLEMS
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


def _check_metrics_token(ctx: Ctx, authorization: str | None) -> None:
    token = ctx.settings.metrics_token
    if token is None:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            403,
            "metrics are off: the operator must set SEALBOX_METRICS_TOKEN and scrape with "
            "Authorization: Bearer <token> (docs/OPERATIONS.md)",
        )
    presented = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        raise ApiError(
            ErrorCode.ADMIN_TOKEN_INVALID,
            401,
            "the metrics token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get("/metrics", tags=["operations"], response_class=Response, responses=PROBLEMS)
def metrics(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus metrics (text exposition format), for the bearer of SEALBOX_METRICS_TOKEN."""
    _check_metrics_token(ctx, authorization)
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
