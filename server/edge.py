"""The HTTP edge: limits and timeouts enforced by the server process itself.

Theory of operation.  uvicorn's httptools protocol buffers whatever a peer sends
before the ASGI app sees a request: a header block of any size and any number of
fields, and it waits forever for a request that never comes (the keep-alive timer
is armed only after a response).  `EdgeHttpProtocol` is that protocol with four
rules added, each answered with a problem+json and ``Connection: close``:

* the request line and header block may not exceed ``max_header_bytes`` (counted as
  the bytes arrive, so a 16 MiB header costs at most one read past the limit) nor
  hold more than ``max_header_count`` fields: 431 ``payload_too_large``;
* the header block must be complete within ``header_timeout_seconds`` of the
  connection's first byte, or of the end of the previous response: 408
  ``request_timeout`` (a connection that sent nothing is closed without a word);
* a body must arrive within ``body_timeout_seconds`` plus one second per
  ``body_min_bytes_per_second`` received (Apache's mod_reqtimeout rule): 408.  The
  clock does not run against the peer while the server itself has paused reading
  (the app has not asked for more of the body yet);
* parser errors answer a problem+json 400 instead of uvicorn's text/plain one.

After such an answer the connection is closed *lingering* (as nginx does): the write
side first, then whatever the peer still sends is read and dropped, for at most
``_LINGER_SECONDS`` and ``_LINGER_BYTES``.  Closing at once with unread bytes would make
the kernel reset the connection and drop the answer before the peer reads it.  The app's
own early answers (401 before the body, 413, 415: ``Connection: close``) close the same
way while their request body is still coming (`_CycleTransport`).

A body cut by the timeout reaches the app as a disconnect, with
``scope["state"][EDGE_TIMEOUT_STATE]`` set, so `server.errors` records a 408 and
not a client disconnect.  Limits come from `Settings` (read once per process).
Nothing here logs an address: only the rule that fired, also counted in the app's
``sealbox_edge_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httptools
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from server.errors import EDGE_TIMEOUT_STATE, PROBLEM_MEDIA_TYPE, problem_document
from server.metrics import Metrics
from server.settings import Settings, get_settings
from sync.errors import ErrorCode

__all__ = ["EdgeHttpProtocol", "EdgeLimits", "uvicorn_options"]

_log = structlog.get_logger("sealbox.edge")


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float
    body_min_rate: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            body_min_rate=settings.body_min_bytes_per_second,
        )


@lru_cache(maxsize=1)
def _process_limits() -> EdgeLimits:
    return EdgeLimits.from_settings(get_settings())


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `sealbox-server serve` passes to ``uvicorn.run`` for the edge rules."""
    return {
        "http": "server.edge:EdgeHttpProtocol",
        # Idle keep-alive connections close after this; the header timeout bounds a
        # connection that trickles bytes instead.
        "timeout_keep_alive": max(1, min(5, int(settings.header_timeout_seconds))),
    }


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; carries the answer."""

    def __init__(self, status: int, code: ErrorCode, reason: str, detail: str, **ext: Any):
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.detail = detail
        self.ext = ext


# Phases of one connection; the edge timer is armed in every phase but APP.
_HEADERS, _BODY, _APP, _LINGER = "headers", "body", "app", "linger"
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024 * 1024  # dropped as read: costs bandwidth for 2 s, no memory


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits and header/body timeouts."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: EdgeLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or _process_limits()
        self._phase = _HEADERS
        self._timer: asyncio.TimerHandle | None = None
        self._raw_header_bytes = 0  # bytes read while the header block is unfinished
        self._header_bytes = 0  # request line and header fields parsed so far
        self._header_count = 0
        self._got_bytes = False  # anything of the current request arrived yet
        self._body_started = 0.0
        self._body_bytes = 0
        self._linger_left = 0

    # --- timer -------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(max(delay, 0.01), self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_headers(self) -> None:
        self._phase = _HEADERS
        self._raw_header_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._got_bytes = False
        self._arm(self.limits.header_timeout)

    def _body_deadline(self) -> float:
        rate = self.limits.body_min_rate
        grace = self._body_bytes / rate if rate else float("inf")
        return self._body_started + self.limits.body_timeout + grace

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self._phase == _LINGER:
            self.transport.close()
        elif self._phase == _HEADERS:
            if not self._got_bytes:
                self.transport.close()  # an idle or silent connection: nothing to answer
                return
            self._refuse(
                _Refused(
                    408, ErrorCode.REQUEST_TIMEOUT, "header_timeout", "the headers took too long"
                )
            )
        elif self._phase == _BODY:
            cycle = self.cycle
            if cycle is not None and cycle.response_complete:
                self.transport.close()  # answered already; the rest of the body is not wanted
                return
            now = time.monotonic()
            if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
                # The app has not asked for (more of) the body yet: the peer is not the slow one.
                self._body_started += self.limits.body_timeout
                self._arm(self.limits.body_timeout)
                return
            deadline = self._body_deadline()
            if now < deadline:
                self._arm(deadline - now)
                return
            if cycle is not None:
                cycle.scope["state"][EDGE_TIMEOUT_STATE] = True
            self._refuse(
                _Refused(408, ErrorCode.REQUEST_TIMEOUT, "body_timeout", "the body took too long"),
                answer=cycle is None or not cycle.response_started,
            )

    # --- answers -----------------------------------------------------------------------

    def _refuse(self, refused: _Refused, *, answer: bool = True) -> None:
        """Answer ``refused`` as problem+json (unless a response has started) and close."""
        self._disarm()
        _log.info("edge_refused", reason=refused.reason, status=refused.status)
        self._count(refused.reason)
        if answer and not self.transport.is_closing():
            body_bytes = json.dumps(
                problem_document(refused.code, refused.status, refused.detail, **refused.ext),
                separators=(",", ":"),
            ).encode()
            head = [STATUS_LINE[refused.status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(body_bytes)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body_bytes)
        self._linger()

    def _linger(self) -> None:
        """Half-close, then drop what the peer still sends until it closes or time is up."""
        if self.transport.is_closing():
            return
        if not self.transport.can_write_eof():  # pragma: no cover - TCP transports can
            self.transport.close()
            return
        self.transport.write_eof()
        self._phase = _LINGER
        self._linger_left = _LINGER_BYTES
        self._arm(_LINGER_SECONDS)

    def close_for_cycle(self) -> None:
        """The app's response is done and the connection must close (`_CycleTransport`)."""
        if self._phase == _BODY:  # the request body is still coming: do not reset
            self._linger()
        elif self._phase != _LINGER:
            self.transport.close()

    def _count(self, reason: str) -> None:
        """Count the refusal in the app's metrics (``sealbox_edge_refused_total``)."""
        ctx = getattr(getattr(self.app, "state", None), "ctx", None)
        metrics = getattr(ctx, "metrics", None)
        if isinstance(metrics, Metrics):
            metrics.edge_refused.labels(reason).inc()

    def send_400_response(self, msg: str) -> None:
        self._refuse(
            _Refused(
                400, ErrorCode.MALFORMED_REQUEST, "invalid_http", "not a valid HTTP/1.1 request"
            )
        )

    # --- protocol events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == _LINGER:  # answered and half-closed: drop what still comes
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        in_headers = self._phase == _HEADERS
        if in_headers:
            self._got_bytes = self._got_bytes or bool(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():  # as uvicorn does (no route here is a websocket)
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refused = exc.__context__ if isinstance(exc.__context__, _Refused) else None
            if refused is None:
                refused = _Refused(
                    400, ErrorCode.MALFORMED_REQUEST, "invalid_http", "not a valid HTTP request"
                )
            self._refuse(refused)
            return
        if in_headers and self._phase == _HEADERS:
            # Every byte of this read belonged to the still unfinished header block.
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self.limits.max_header_bytes:
                self._refuse(self._headers_too_large())

    def _headers_too_large(self) -> _Refused:
        return _Refused(
            431,
            ErrorCode.PAYLOAD_TOO_LARGE,
            "header_bytes",
            "the request line and headers are too large",
            limits={"max_header_bytes": self.limits.max_header_bytes},
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEADERS:
            self._start_headers()
        self._got_bytes = True

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            raise self._headers_too_large()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_header_count:
            raise _Refused(
                431,
                ErrorCode.PAYLOAD_TOO_LARGE,
                "header_count",
                "the request has too many header fields",
                limits={"max_header_count": self.limits.max_header_count},
            )
        if self._header_bytes > self.limits.max_header_bytes:
            raise self._headers_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._body_started = time.monotonic()
        self._body_bytes = 0
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, _CycleTransport):
            self.cycle.transport = _CycleTransport(self)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _APP
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._phase == _APP and not self.pipeline:
            # Waiting for the next request: keep-alive closes an idle connection; the
            # header timer bounds one that trickles bytes.
            self._start_headers()


class _CycleTransport:
    """The transport as one request's cycle sees it: the same, except that ``close``
    lingers while the request body is still arriving (see the module docstring)."""

    def __init__(self, protocol: EdgeHttpProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing() or self._protocol._phase == _LINGER

    def close(self) -> None:
        self._protocol.close_for_cycle()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
