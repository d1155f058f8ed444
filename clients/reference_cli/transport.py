"""The one network seam of the CLI: HTTP over httpx2, request signing, bounded retries.

Theory of operation:
* `Transport.send` turns an engine `Request` into an HTTP exchange.  Signed
  requests get RFC 9421 headers from `sync.auth.sign_request`, with a fresh
  nonce for every attempt (the server refuses a reused nonce).
* Connection failures, timeouts, 429 and 5xx are retried a bounded number of
  times with exponential backoff and full jitter (honouring Retry-After); any
  other answer goes back to the engine, which decides.
* `run_flow` drives an engine generator: requests go to the transport,
  checkpoints to a callback that persists state.
* Counts the bytes it puts on and takes off the wire (for `bench/`).
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar
from urllib.parse import urlencode

import cbor2
import httpx2

from crypto import SigningKey
from sync.auth import sign_request
from sync.engine import Checkpoint, Request, Response
from sync.messages import CBOR_MEDIA_TYPE

__all__ = ["NetworkError", "Transport", "run_flow"]

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class NetworkError(Exception):
    """The server could not be reached (or kept failing) within the retry budget."""


class Transport:
    def __init__(
        self,
        base_url: str,
        *,
        signing_key: SigningKey | None = None,
        retries: int = 5,
        base_delay: float = 0.25,
        max_delay: float = 8.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signing_key = signing_key
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.client = httpx2.Client(timeout=timeout, headers={"user-agent": "sealbox"})
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def send(self, request: Request, *, bearer: str | None = None) -> Response:
        url = self.base_url + request.path
        if request.query:
            url += "?" + urlencode(request.query)
        if request.content is not None:
            body, content_type = request.content, request.content_type
        elif request.body is not None:
            body = json.dumps(request.body, separators=(",", ":")).encode()
            content_type = "application/json"
        else:
            body, content_type = b"", None
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            headers = {"accept": request.accept}
            if body and content_type:
                headers["content-type"] = content_type
            if bearer is not None:
                headers["authorization"] = f"Bearer {bearer}"
            if request.signed and self.signing_key is not None:
                headers.update(
                    sign_request(
                        method=request.method,
                        url=url,
                        body=body or None,
                        key=self.signing_key,
                        created=int(time.time()),
                        nonce=secrets.token_urlsafe(24),
                    )
                )
            try:
                response = self.client.request(
                    request.method, url, content=body or None, headers=headers
                )
            except httpx2.HTTPError as exc:
                last_error = type(exc).__name__
                if attempt < self.retries:
                    self.sleep(self._delay(attempt, None))
                continue
            self.requests += 1
            self.bytes_sent += len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items())
            self.bytes_received += len(response.content) + sum(
                len(k) + len(v) + 4 for k, v in response.headers.items()
            )
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                last_error = f"HTTP {response.status_code}"
                self.sleep(self._delay(attempt, response.headers.get("retry-after")))
                continue
            parsed: Any = None
            if response.content:
                media_type = response.headers.get("content-type", "").split(";")[0].strip()
                try:
                    if media_type == CBOR_MEDIA_TYPE:
                        parsed = cbor2.loads(response.content)
                    else:
                        parsed = response.json()
                except (ValueError, TypeError, OverflowError, RecursionError):  # any bad body
                    parsed = {"detail": response.text[:200]}
            return Response(response.status_code, parsed)
        raise NetworkError(
            f"the server at {self.base_url} is unreachable ({last_error}); try again later"
        )


def run_flow(
    flow: Generator[Request | Checkpoint, Response | None, T],
    transport: Transport,
    on_checkpoint: Callable[[Checkpoint], None] = lambda c: None,
) -> T:
    """Drive an engine flow to completion and return its result."""
    try:
        message = next(flow)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        if isinstance(message, Checkpoint):
            on_checkpoint(message)
            reply: Response | None = None
        else:
            reply = transport.send(message)
        try:
            message = flow.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
