"""The only exception -> HTTP mapping: RFC 9457 problem+json with stable codes.

Services raise `ApiError(code, status, detail, **extensions)`; FastAPI's own
validation errors, 404 and 405 are mapped here too, so every error a client sees
has the same shape (docs/PROTOCOL.md §10).  Internal errors are logged without
request data and answered with a bare ``internal`` problem: upstream text is
never passed on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from sync.errors import ErrorCode, problem_type

__all__ = [
    "EDGE_TIMEOUT_STATE",
    "PROBLEM_MEDIA_TYPE",
    "ApiError",
    "install_error_handlers",
    "problem_document",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
EDGE_TIMEOUT_STATE = "sealbox_edge_timeout"
"""Key `server.edge` sets in the request's ``scope["state"]`` when it cut a slow body."""
_log = structlog.get_logger("sealbox.errors")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """A peer-visible failure: ``code`` is stable, ``detail`` human-readable."""

    def __init__(
        self,
        code: ErrorCode,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


def problem_document(
    code: ErrorCode, status: int, detail: str, **extensions: Any
) -> dict[str, Any]:
    """The RFC 9457 members of a problem (also written raw by `server.edge`)."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code.value,
    }
    body.update(extensions)
    return body


def problem_response(
    code: ErrorCode,
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = problem_document(code, status, detail, **extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors()[:20]:
        # Never echo the input back (it may be large or sensitive); location and message only.
        loc = [str(part) for part in error.get("loc", ())]
        out.append({"loc": loc, "msg": str(error.get("msg", ""))[:200]})
    return out


def _allowed_methods(request: Request) -> list[str]:
    """Every method any route serves at this path (a 405 lists them all in Allow)."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        request.app.state, "allow_table", None
    )
    if table is None:
        table = []
        for path, operations in request.app.openapi().get("paths", {}).items():
            regex = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
            table.append((regex, {m.upper() for m in operations}))
        request.app.state.allow_table = table
    methods: set[str] = set()
    for regex, allowed in table:
        if regex.match(request.url.path):
            methods |= allowed
    return sorted(methods)


def _disconnect_problem(request: Request) -> JSONResponse:
    """The peer went away (or `server.edge` cut it for sending too slowly) before its body
    was complete: nothing was read to the end, so nothing was written.  The response is
    never delivered; its status is what /metrics and the log record (never a 500)."""
    if request.scope.get("state", {}).get(EDGE_TIMEOUT_STATE):
        _log.info("request_timeout", phase="body")
        return problem_response(
            ErrorCode.REQUEST_TIMEOUT, 408, "the request body was not sent in time"
        )
    _log.info("client_disconnected", phase="body")
    return problem_response(
        ErrorCode.MALFORMED_REQUEST,
        499,
        "the client closed the connection before the body was complete",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(
            exc.code, exc.status, exc.detail, headers=exc.headers, **exc.extensions
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(
            ErrorCode.VALIDATION_FAILED,
            422,
            "the request does not match the schema",
            errors=_validation_errors(exc),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ClientDisconnect):
            # FastAPI wraps a disconnect while it reads a JSON body in a 400.
            return _disconnect_problem(request)
        if exc.status_code == 404:
            return problem_response(ErrorCode.NOT_FOUND, 404, "no such resource")
        if exc.status_code == 405:
            allow = _allowed_methods(request)
            return problem_response(
                ErrorCode.METHOD_NOT_ALLOWED,
                405,
                "method not allowed",
                headers={"Allow": ", ".join(allow)} if allow else exc.headers,
            )
        code = ErrorCode.MALFORMED_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL
        return problem_response(code, exc.status_code, str(exc.detail)[:200], headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        return _disconnect_problem(request)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        _log.error("internal_error", error_type=type(exc).__name__)
        return problem_response(ErrorCode.INTERNAL, 500, "internal error; nothing was written")
