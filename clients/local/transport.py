"""The one network seam of the CLI: HTTP over httpx2, request signing, bounded reads, retries.

Theory of operation:
* `Transport.send` turns a flow's `Request` into an HTTP exchange and answers a
  `Response` of raw bytes.  Signed requests get RFC 9421 headers from
  `sync.auth.sign_request`, with a fresh nonce for every attempt (the server refuses a
  reused nonce).
* The answer is streamed and read only up to ``Request.max_answer_bytes``: a longer
  one is cut there and marked ``oversized`` (the flow calls it misbehaviour).  An
  answer that trickles in slower than `MIN_RATE` bytes per second after `GRACE`
  seconds is abandoned, so a server cannot hold a sync open for ever.
* Connection failures, timeouts, 429 and 5xx are retried a bounded number of times
  with exponential backoff and full jitter (honouring Retry-After); any other answer
  goes back to the flow, which decides.
* `send_many` sends a `Concurrent` step on a small thread pool (attachment chunks) and
  returns (or raises the first failure) only once every request of the step has ended.
* Counts the bytes it puts on and takes off the wire (for `bench/`).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from urllib.parse import urlencode

import httpx2

from crypto import SigningKey
from sync.auth import sign_request
from sync.client import Concurrent, Request, Response

__all__ = ["GRACE", "MIN_RATE", "RETRY_STATUSES", "NetworkError", "Transport"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MIN_RATE = 256
"""Bytes per second an answer must average once `GRACE` seconds have passed."""
GRACE = 60.0


class NetworkError(Exception):
    """The server could not be reached (or kept failing) within the retry budget."""


class _TooSlow(Exception):
    pass


def _describe(exc: Exception) -> str:
    """A failed exchange in words (the exception's class name means nothing to a user)."""
    if isinstance(exc, _TooSlow):
        return "answer too slow"
    if isinstance(exc, httpx2.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return (
                "its TLS certificate is not trusted here: if it is signed by your own CA,"
                " point SSL_CERT_FILE at that CA's certificate"
            )
        return "cannot connect"
    if isinstance(exc, httpx2.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx2.RemoteProtocolError):
        return "the connection closed in the middle of an answer"
    if isinstance(exc, (httpx2.ReadError, httpx2.WriteError)):
        return "the connection broke"
    return type(exc).__name__


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
        clock: Callable[[], float] = time.monotonic,
        grace: float = GRACE,
        min_rate: int = MIN_RATE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signing_key = signing_key
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        self.grace = grace
        self.min_rate = min_rate
        self.client = httpx2.Client(timeout=timeout, headers={"user-agent": "sealbox"})
        self._pool: ThreadPoolExecutor | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self.client.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def _headers(self, request: Request, url: str, body: bytes, content_type: str | None,
                 bearer: str | None) -> dict[str, str]:  # fmt: skip
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
        return headers

    def _read(self, response: httpx2.Response, limit: int) -> tuple[bytes, bool]:
        """At most ``limit`` bytes of the answer, and whether there was more."""
        started, parts, size = self.clock(), [], 0
        for piece in response.iter_bytes():
            parts.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(parts)[:limit], True
            elapsed = self.clock() - started
            if elapsed > self.grace and size / elapsed < self.min_rate:
                raise _TooSlow
        return b"".join(parts), False

    def send(self, request: Request, *, bearer: str | None = None) -> Response:
        url = self.base_url + request.path
        if request.query:
            url += "?" + urlencode(request.query)
        body, content_type = request.encoded()
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            headers = self._headers(request, url, body, content_type, bearer)
            try:
                with self.client.stream(
                    request.method, url, content=body or None, headers=headers
                ) as response:
                    content, oversized = self._read(response, request.max_answer_bytes)
            except (httpx2.HTTPError, _TooSlow) as exc:
                last_error = _describe(exc)
                if attempt < self.retries:
                    self.sleep(self._delay(attempt, None))
                continue
            self.requests += 1
            self.bytes_sent += len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items())
            self.bytes_received += len(content) + sum(
                len(k) + len(v) + 4 for k, v in response.headers.items()
            )
            retry_after = response.headers.get("retry-after")
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                last_error = f"HTTP {response.status_code}"
                self.sleep(self._delay(attempt, retry_after))
                continue
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return Response(response.status_code, content, media_type, oversized, retry_after)
        if last_error.startswith("its TLS certificate"):  # retrying later will not help
            raise NetworkError(f"cannot talk to the server at {self.base_url}: {last_error}")
        raise NetworkError(
            f"the server at {self.base_url} is unreachable ({last_error}); try again later"
        )

    def send_many(self, requests: Concurrent) -> tuple[Response, ...]:
        """Send the requests of a `Concurrent` step at once; answers in request order."""
        if len(requests) <= 1:
            return tuple(self.send(r) for r in requests)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(4, thread_name_prefix="sealbox-http")
        futures = [self._pool.submit(self.send, r) for r in requests]
        # The step ends when every request has: raising at the first failure would leave
        # the others on the wire, still changing the server after the caller moved on.
        wait(futures)
        return tuple(f.result() for f in futures)
