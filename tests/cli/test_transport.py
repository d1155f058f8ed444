"""The CLI network seam: bounded retries, backoff, fresh signature per attempt (PROTOCOL §15.2)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clients.local.transport import NetworkError, Transport
from crypto import SigningKey
from sync.client import Request


class Flaky(BaseHTTPRequestHandler):
    failures = 2
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append({**headers, "body": body.decode()})
        if len(type(self).seen) <= type(self).failures:
            self.send_response(503)
            self.send_header("retry-after", "0")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        payload = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky():
    Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_transient_failures_are_retried_with_a_fresh_signed_nonce(flaky) -> None:
    delays: list[float] = []
    transport = Transport(
        f"http://127.0.0.1:{flaky.server_port}",
        signing_key=SigningKey.generate(),
        sleep=delays.append,
    )
    response = transport.send(Request("POST", "/v1/orgs/x/push", {"envelopes": []}))
    transport.close()
    assert response.status == 200 and json.loads(response.content) == {"ok": True}
    assert len(Flaky.seen) == 3 and len(delays) == 2
    signatures = {h["signature-input"] for h in Flaky.seen}
    assert len(signatures) == 3  # each attempt signed afresh (a replayed nonce would be refused)
    assert all("content-digest" in h for h in Flaky.seen)


def test_retries_are_bounded_and_end_in_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    delays: list[float] = []
    transport = Transport(
        f"http://127.0.0.1:{port}", retries=3, sleep=delays.append, base_delay=0.5, max_delay=4
    )
    with pytest.raises(NetworkError, match="unreachable"):
        transport.send(Request("GET", "/v1/server", signed=False))
    transport.close()
    assert len(delays) == 3
    # Full jitter under an exponential cap: attempt k waits at most base * 2**k.
    assert all(0 <= d <= 0.5 * 2**k for k, d in enumerate(delays))


class Endless(BaseHTTPRequestHandler):
    """Answers 200 and then a body that never ends, fast or at a trickle."""

    delay = 0.0

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "application/cbor")
        self.end_headers()
        try:
            for _ in range(100_000):
                self.wfile.write(b"\x00" * (1 if type(self).delay else 65536))
                self.wfile.flush()
                if type(self).delay:
                    threading.Event().wait(type(self).delay)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endless():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_answer_is_read_only_up_to_its_bound(endless) -> None:
    """PROTOCOL §15.9 item 1: bounded before it is allocated, marked oversized."""
    Endless.delay = 0.0
    transport = Transport(f"http://127.0.0.1:{endless.server_port}", retries=0)
    try:
        response = transport.send(Request("GET", "/x", signed=False, max_answer_bytes=100_000))
    finally:
        transport.close()
    assert response.oversized and len(response.content) == 100_000


def test_an_answer_that_trickles_in_is_abandoned(endless) -> None:
    """PROTOCOL §15.9 item 2: slower than the floor after the grace period."""
    Endless.delay = 0.05
    transport = Transport(
        f"http://127.0.0.1:{endless.server_port}", retries=0, grace=0.5, min_rate=1000
    )
    try:
        with pytest.raises(NetworkError, match="too slow"):
            transport.send(Request("GET", "/x", signed=False))
    finally:
        transport.close()


class HalfBroken(BaseHTTPRequestHandler):
    """``/fail`` hangs up at once (a lost connection); ``/slow`` answers a while later."""

    slow_answered = threading.Event()

    def do_PUT(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/fail":
            self.close_connection = True
            return
        threading.Event().wait(1.0)
        type(self).slow_answered.set()  # before the answer leaves, so it is seen first
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_concurrent_step_ends_only_when_all_its_requests_have() -> None:
    """A failure in one chunk upload must not leave the others on the wire after the call
    returned: the caller would judge the server's state while it is still changing."""
    HalfBroken.slow_answered.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), HalfBroken)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    transport = Transport(f"http://127.0.0.1:{server.server_port}", retries=0)
    try:
        requests = (
            Request("PUT", "/fail", content=b"x", content_type="a/b", signed=False),
            Request("PUT", "/slow", content=b"y", content_type="a/b", signed=False),
        )
        with pytest.raises(NetworkError):
            transport.send_many(requests)
        assert HalfBroken.slow_answered.is_set()
    finally:
        transport.close()
        server.shutdown()
        server.server_close()
