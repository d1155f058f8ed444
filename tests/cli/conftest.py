"""A real `sealbox-server serve` on 127.0.0.1 and a helper running the real `sealbox` CLI.

Each scenario gets its own server process (free port, temporary data dir, admin
token) and its own homes, so scenarios are independent.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

BIN = Path(sys.executable).parent
SEALBOX = str(BIN / "sealbox")
SERVER = str(BIN / "sealbox-server")
PASSPHRASE = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    admin_token: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> None:
        subprocess.run([SERVER, "migrate"], env=self.env, check=True, capture_output=True)
        with (self.data_dir.parent / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [SERVER, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: stop() takes every worker
            )
        # Readiness, not a fixed sleep; generous, since a busy machine starts slowly.
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("the server exited during start-up (see server.log)")
                try:
                    if httpx2.get(self.url + "/readyz", timeout=2).status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass
                time.sleep(0.1)
            raise RuntimeError("the server did not become ready in 120 s")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()
        self.process = None


def _live_server(root: Path) -> Iterator[LiveServer]:
    port = free_port()
    data_dir = root / "server-data"
    data_dir.mkdir()
    token = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "SEALBOX_DATA_DIR": str(data_dir),
        "SEALBOX_ADMIN_TOKEN": token,
        # Two workers, not the production default of four: a CLI scenario is one client at a
        # time, and on CI's two cores each extra worker is start-up time and memory per test.
        "SEALBOX_WORKERS": "2",
    }
    env.pop("SEALBOX_DATABASE_URL", None)
    live = LiveServer(f"http://127.0.0.1:{port}", data_dir, token, env, port=port)
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of this test's own (for tests that stop, restore or restart it)."""
    yield from _live_server(tmp_path)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for a module's tests that only talk to it (each test makes its own org)."""
    yield from _live_server(tmp_path_factory.mktemp("shared"))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Device:
    """One profile (home directory) driven through the real `sealbox` executable."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        *args: str,
        check: bool = True,
        as_json: bool = True,
        timeout: float = 120,
        home_first: bool = False,
        unprivileged: bool = False,
        stdout: Any = None,
    ) -> Result:
        """Run ``sealbox ARGS --home HOME [--json]``, detached from any terminal.

        ``home_first`` puts ``--home`` before the command (the global option);
        ``unprivileged`` runs without root's file-permission override (`UNPRIVILEGED`)
        so that read-only directories are read-only; ``stdout`` redirects standard
        output to an open file (then ``Result.stdout`` is empty).
        """
        home = ["--home", str(self.home)]
        argv = [SEALBOX, *home, *args] if home_first else [SEALBOX, *args, *home]
        argv += ["--json"] if as_json else []
        if unprivileged:
            argv = [*UNPRIVILEGED, *argv]
        done = subprocess.run(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            start_new_session=True,  # no controlling terminal: nothing can prompt
        )
        result = Result(done.returncode, done.stdout or "", done.stderr)
        if check and result.code != 0:
            raise AssertionError(
                f"sealbox {' '.join(args)} exited {result.code}:\n{done.stderr}\n{done.stdout}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [SEALBOX, *args, "--home", str(self.home), "--json"]
        return subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture
def devices(tmp_path: Path, request: pytest.FixtureRequest):
    name = "shared_server" if "shared_server" in request.fixturenames else "server"
    server: LiveServer = request.getfixturevalue(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env["SEALBOX_PASSPHRASE"] = PASSPHRASE
    env["SEALBOX_ADMIN_TOKEN"] = server.admin_token
    env["NO_COLOR"] = "1"

    def make(name: str) -> Device:
        return Device(tmp_path / "homes" / name, dict(env))

    return make


UNPRIVILEGED: list[str] = (
    ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)
"""A prefix that makes root honour file modes (drops CAP_DAC_OVERRIDE); empty otherwise."""
CAN_BE_DENIED = os.geteuid() != 0 or bool(UNPRIVILEGED)


def read_only(path: Path) -> Path:
    """Make ``path`` (a directory tree) read-only for its owner; returns it."""
    for child in [*path.rglob("*"), path]:
        child.chmod(0o500 if child.is_dir() else 0o400)
    return path


class CuttingProxy:
    """A TCP proxy to a live server that can start dropping connections mid-answer.

    Passing, it pipes bytes both ways unchanged (the Host header is the proxy's, the
    one the CLI signed).  Cutting, it reads each request whole, sends the start of a
    200 answer that promises more bytes than it sends, and closes the connection: a
    server or network that dies in the middle of an answer.
    """

    CUT_ANSWER = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n"
        b'{"partial": '
    )

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cutting = False
        self.cut_count = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            target = self._cut if self.cutting else self._pass
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _pass(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)
        client.close()
        upstream.close()

    def _cut(self, client: socket.socket) -> None:
        with client:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = client.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    piece = client.recv(65536)
                    if not piece:
                        return
                    body += piece
                self.cut_count += 1
                client.sendall(self.CUT_ANSWER)
            except OSError:
                pass


def grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    """Every (file, needle) where a needle occurs in any file under root (raw bytes)."""
    hits = []
    if not root.exists():
        return hits
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits
