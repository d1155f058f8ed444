"""The Desk's HTTP edge: who may talk to it, and the headers every answer carries.

* Loopback only: the socket is bound to 127.0.0.1 and a peer that is not loopback is refused.
* `Host` must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page has its own
  host name in `Host`).
* A state-changing request (anything but GET/HEAD) must come from the Desk's own origin
  (`Origin`, else `Sec-Fetch-Site: same-origin`) and carry the session's CSRF token.
* A session starts only from the one-time URL token (like Jupyter's), exchanged once for an
  HttpOnly, SameSite=Strict cookie; the token is then spent.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

ATTACHMENTS = "/attachments/"
"""Where the Desk serves decrypted attachments; the only place a page may frame (a PDF)."""


def security_headers(port: int, *, framed: bool = False) -> dict[str, str]:
    """The headers of every answer. Pages may frame only the Desk's own attachment URLs
    (``frame-src``: a PDF in the browser's viewer); ``framed`` is for the one answer a Desk
    page may frame (a PDF attachment): ``frame-ancestors 'self'`` instead of ``'none'``."""
    attachments = f"http://127.0.0.1:{port}{ATTACHMENTS} http://localhost:{port}{ATTACHMENTS}"
    ancestors = "'self'" if framed else "'none'"
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:;"
            f" media-src 'self' blob:; frame-src {attachments}; form-action 'self';"
            f" frame-ancestors {ancestors}; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Frame-Options": "SAMEORIGIN" if framed else "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


COOKIE = "sealbox_desk"
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Gate:
    """The one-time token, the session it turns into, and the allowed hosts and origins."""

    port: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    session: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{h}" for h in self.hosts)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/login?token={self.token}"

    def host_ok(self, host: str | None) -> bool:
        return host is not None and host.lower() in self.hosts

    def origin_ok(self, origin: str | None, fetch_site: str | None) -> bool:
        """A state change from the Desk's own pages (a form or fetch of its origin).

        Under ``Referrer-Policy: no-referrer`` a browser sends ``Origin: null`` on form
        posts, even same-origin ones; then `Sec-Fetch-Site` (which no page can set) decides.
        """
        if origin is not None and origin != "null":
            return origin.lower() in self.origins
        return fetch_site == "same-origin"

    def exchange(self, token: str) -> str | None:
        """The new session id for the one-time ``token``, once; None after (or if wrong)."""
        with self._lock:
            if not self.token or not _same(token, self.token):
                return None
            self.token = ""  # spent
            self.session = secrets.token_urlsafe(32)
            self.csrf = secrets.token_urlsafe(32)
            return self.session

    def session_ok(self, cookie: str | None) -> bool:
        return bool(cookie and self.session and _same(cookie, self.session))

    def csrf_ok(self, value: str | None) -> bool:
        return bool(value) and _same(str(value), self.csrf)


@dataclass
class Idle:
    """When the Desk was last used; past ``seconds`` of silence it locks."""

    seconds: float
    last: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last = time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() - self.last > self.seconds
