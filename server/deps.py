"""Shared FastAPI dependencies: the server context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.context import ServerContext

__all__ = ["Ctx", "get_ctx"]


def get_ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ServerContext, Depends(get_ctx)]
