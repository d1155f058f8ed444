"""A malicious server, played as a proxy in front of a real one (tests only).

The CLI talks to the proxy; the proxy forwards every request unchanged to the honest
server (the same Host header, so request signatures still verify) and, when an
`Attack` matches the request, answers what the attack makes of the honest answer:
garbage, huge, deep, endless, reordered, truncated or poisoned.  With no attack it is
a transparent pipe, so the following honest sync runs through the same URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

__all__ = ["Answer", "Attack", "HostileProxy", "Seen"]

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Seen:
    """What the proxy saw: the request, and the honest server's answer to it."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/cbor"


Attack = Callable[[Seen], Answer | None]
"""Returns the answer to send instead of the honest one, or None to pass it through."""


class HostileProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.attack: Attack | None = None
        self.hits = 0
        proxy = self
        self._client = httpx2.Client(timeout=60)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                headers["host"] = self.headers.get("host", "")
                upstream = proxy._client.request(
                    self.command, proxy.upstream + self.path, content=body or None, headers=headers
                )
                split = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    split.path,
                    {k: v[0] for k, v in parse_qs(split.query).items()},
                    upstream.status_code,
                    {k.lower(): v for k, v in upstream.headers.items()},
                    upstream.content,
                )
                attack = proxy.attack
                answer = attack(seen) if attack is not None else None
                if answer is None:
                    answer = Answer(
                        upstream.status_code,
                        upstream.content,
                        upstream.headers.get("content-type", "application/json"),
                    )
                else:
                    proxy.hits += 1
                self._send(answer)

            def _send(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                try:
                    if isinstance(answer.body, bytes):
                        self.send_header("content-length", str(len(answer.body)))
                        self.end_headers()
                        self.wfile.write(answer.body)
                    else:
                        self.send_header("connection", "close")
                        self.end_headers()
                        for piece in answer.body:
                            self.wfile.write(piece)
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client stopped reading: as it should

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._client.close()
