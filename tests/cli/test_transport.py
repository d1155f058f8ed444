"""The CLI network seam: bounded retries, backoff, fresh signature per attempt (PROTOCOL §15.2)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clients.reference_cli.transport import NetworkError, Transport
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
