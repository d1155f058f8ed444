"""Shared FastAPI dependencies: the server context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.context import ServerContext
from server.errors import ApiError
from sync.errors import ErrorCode

__all__ = ["Ctx", "get_ctx", "reject_unknown_query_parameters"]


def get_ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


async def _ctx(request: Request) -> ServerContext:
    # A coroutine: FastAPI runs a plain-function dependency in its thread pool, a hop that
    # costs more than the lookup (so do the other trivial dependencies of the API).
    return get_ctx(request)


Ctx = Annotated[ServerContext, Depends(_ctx)]


async def reject_unknown_query_parameters(request: Request) -> None:
    """Refuse query parameters a route does not declare (strict, like extra="forbid").

    The declared ones come from the app's own OpenAPI document, so the check and
    the published schema can never disagree.
    """
    if not request.query_params:
        return
    path = getattr(request.scope.get("route"), "path", None)
    if path is None:
        return
    table: dict[tuple[str, str], set[str]] | None = getattr(request.app.state, "query_table", None)
    if table is None:
        table = {}
        for template, operations in request.app.openapi().get("paths", {}).items():
            for method, operation in operations.items():
                names = {
                    p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
                }
                table[(template, method.upper())] = names
        request.app.state.query_table = table
    allowed = table.get((path, request.method), set())
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(
            ErrorCode.VALIDATION_FAILED,
            422,
            "unknown query parameters",
            errors=[
                {"loc": ["query", name[:50]], "msg": "not a parameter of this route"}
                for name in unknown[:10]
            ],
        )
