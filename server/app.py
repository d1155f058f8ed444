"""The FastAPI application factory.

``create_app(settings)`` wires settings, the database engine, the server key,
error handlers, metrics/logging middleware and the routers.  Nothing here reads
the environment: `server.cli` builds the `Settings` and passes them in.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import routes_attachments
from server.context import ServerContext
from server.db import engine_for
from server.deps import reject_unknown_query_parameters
from server.errors import install_error_handlers, problem_response
from server.metrics import Metrics
from server.routes import grants, meta, orgs, sync_routes
from server.settings import Settings, load_or_create_server_key
from sync.errors import ErrorCode

__all__ = ["create_app"]

_log = structlog.get_logger("sealbox.http")


class _BodyLimitMiddleware:
    """Refuse request bodies over the limit before reading them into memory (413).

    The limit is the batch limit in base64 plus JSON framing; attachment chunks
    (raw bytes) fit well inside it.  It is enforced on Content-Length before any byte
    is read, and again on the bytes as they are read (chunked bodies).  A response that
    starts before the body was read to its end (a refusal: 401, 413, 415...) carries
    ``Connection: close``, so the rest of that body is never read at all.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.limit
                except ValueError:
                    too_large = False
                if too_large:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0
        over = False
        replaced = False
        body_done = not _has_body(scope)

        async def counting_receive() -> Message:
            nonlocal seen, over, body_done
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Stop reading; whatever the app answers is replaced by a 413.
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                body_done = body_done or not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if not over:
                if message["type"] == "http.response.start" and not body_done:
                    message = _with_connection_close(message)
                await send(message)
            elif not replaced:
                replaced = True
                await self._refuse(scope, receive, send)

        await self.app(scope, counting_receive, guarded_send)
        if over and not replaced:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            ErrorCode.PAYLOAD_TOO_LARGE,
            413,
            f"the request body is over {self.limit} bytes",
            headers={"Connection": "close"},
            limit_bytes=self.limit,
        )
        await response(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _with_connection_close(message: Message) -> Message:
    headers = list(message.get("headers", ()))
    if not any(name.lower() == b"connection" for name, _ in headers):
        headers.append((b"connection", b"close"))
    return {**message, "headers": headers}


class _ObserveMiddleware:
    """Counts and times requests by route template; logs no path, header, query or address."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            if status >= 500:
                _log.error("request", route=template, method=scope["method"], status=status)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the app. ``engine`` overrides the one from settings (tests, PostgreSQL schemas)."""
    ctx = ServerContext(
        settings=settings,
        engine=engine if engine is not None else engine_for(settings),
        server_key=load_or_create_server_key(settings.resolved_server_key_file),
        metrics=Metrics(settings.prometheus_multiproc_dir),
        verify_pool=ThreadPoolExecutor(settings.verify_threads, thread_name_prefix="verify")
        if settings.verify_threads > 1
        else None,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _log.info(
            "server_started",
            backend="sqlite" if settings.is_sqlite else "postgresql",
            admin_token_set=settings.admin_token is not None,
        )
        yield
        _log.info("server_stopping")
        ctx.close()

    options: dict[str, Any] = dict(
        dependencies=[Depends(reject_unknown_query_parameters)],
        title="Sealbox sync server",
        version="1",
        summary="Stores and relays only ciphertext (protocol v1, docs/PROTOCOL.md).",
        lifespan=lifespan,
    )
    if settings.api_docs:
        # Swagger UI from assets in an installed package: nothing is fetched from a CDN,
        # so the page works offline and tells no third party that the operator looked.
        app = FastAPIOffline(docs_url="/docs", redoc_url=None, static_url="/docs-assets", **options)
    else:
        # /openapi.json stays: clients and tests read the schema; no browsable page.
        app = FastAPI(docs_url=None, redoc_url=None, **options)
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(meta.router)
    app.include_router(orgs.router)
    app.include_router(sync_routes.router)
    app.include_router(grants.router)
    app.include_router(routes_attachments.router)
    app.add_middleware(
        _BodyLimitMiddleware,
        limit=settings.max_batch_bytes * 4 // 3 + 64 * settings.max_batch_items + 65536,
    )
    app.add_middleware(_ObserveMiddleware, metrics=ctx.metrics)
    return app
