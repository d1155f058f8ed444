"""A split view between two coordinators, caught through checkpoints inside signed data
(PROTOCOL §17.8; THREAT_MODEL §7.5), with real processes.

The malicious server is two real servers that share one history up to the fork (the second
is a copy of the first's database, so the same key and organisation), behind a proxy that
sends one coordinator to the copy from then on.  Coordinator A's edit goes only to the
first; the field device's reports go to both.  Each server's log is consistent in itself,
so no check either coordinator runs alone can see the fork; but the field device seals the
log it was shown into its next revision, and when that revision reaches coordinator B, the
copy cannot prove that log a prefix of the one it shows B.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2

from tests.cli.conftest import LiveServer, free_port
from tests.cli.test_scenarios import _org

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
_KEYID = re.compile(r'keyid="([0-9a-f]{32})"')


class ForkingProxy:
    """Forwards each request to ``upstream``, except those signed by a device in ``forked``,
    which go to ``fork``; pushes of devices in ``mirrored`` go to both (the first answers)."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.fork = upstream, ""
        self.forked: set[str] = set()
        self.mirrored: set[str] = set()
        client = httpx2.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                found = _KEYID.search(self.headers.get("signature-input", ""))
                device = found.group(1) if found else ""
                target = proxy.fork if device in proxy.forked else proxy.upstream
                answer = client.request(
                    self.command, target + self.path, content=body or None, headers=headers
                )
                if device in proxy.mirrored and self.command == "POST" and proxy.fork:
                    client.request(
                        self.command, proxy.fork + self.path, content=body, headers=headers
                    )
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", ""))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = _handle  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._client = client

    @contextmanager
    def running(self) -> Iterator[ForkingProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(10)
            self._client.close()


class _Proxied:
    """The `server` fixture as the CLI sees it: its URL is the proxy's."""

    def __init__(self, server: LiveServer, url: str) -> None:
        self.url = url
        self.admin_token = server.admin_token


def test_a_split_view_between_two_coordinators_is_caught_by_the_field_devices_witness(
    server: LiveServer, devices, tmp_path: Path
) -> None:
    """PROTOCOL §17.8: coordinator B is shown a log without coordinator A's edit; the field
    device's next revision carries the log it was shown (with A's edit); B names it a
    ``split-view``. A, shown the full log, sees nothing wrong; nothing honest is flagged."""
    proxy = ForkingProxy(server.url)
    with proxy.running():
        a, (field,) = _org(_Proxied(server, proxy.url), devices, "field")
        code = a.run("invite", "create", "--role", "coordinator").json["code"]
        b = devices("deputy")
        b_id = b.run("enroll", code, "--label", "deputy").json["device_id"]
        a.run("sync")  # admits B
        field.run("sync")  # learns that the epoch is sealed to both
        report = field.run("report", "new", "-f", "place=Market").json["report_id"]
        field.run("sync")
        for coordinator in (a, b):
            assert not coordinator.run("sync").json.get("log_findings")

        # The fork: a copy of the server's database behind a second real server.
        server.stop()
        fork_dir = tmp_path / "fork" / "server-data"
        shutil.copytree(server.data_dir, fork_dir)
        fork = LiveServer(
            "", fork_dir, server.admin_token, {**server.env, "SEALBOX_DATA_DIR": str(fork_dir)}
        )
        fork.port = free_port()
        fork.url = f"http://127.0.0.1:{fork.port}"
        server.start()
        fork.start()
        try:
            proxy.fork = fork.url
            proxy.forked.add(b_id)
            proxy.mirrored.add(field.device_id)

            a.run("report", "edit", report, "-f", "checked=yes")  # reaches the first only
            a.run("sync")
            field.run("sync")  # adopts the log with A's edit in it
            field.run("report", "new", "-f", "place=School")
            field.run("sync")  # sealed with that log as its witness; pushed to both

            seen = b.run("sync").json
            assert seen["log_findings"] == ["split-view"]
            warnings = b.run("status").json["warnings"]
            assert any(w.startswith("split-view") and field.device_id in w for w in warnings)
            # A is shown the full log: the same witness is a prefix of it.
            assert not a.run("sync").json.get("log_findings")
            assert not any(w.startswith("split-view") for w in a.run("status").json["warnings"])
        finally:
            fork.stop()
