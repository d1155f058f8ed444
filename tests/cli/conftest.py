"""A real `sealbox-server serve` on 127.0.0.1 and a helper running the real `sealbox` CLI.

Each scenario gets its own server process (free port, temporary data dir, admin
token) and its own homes, so scenarios are independent.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
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
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
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
        self, *args: str, check: bool = True, as_json: bool = True, timeout: float = 120
    ) -> Result:
        argv = [SEALBOX, *args, "--home", str(self.home)] + (["--json"] if as_json else [])
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        result = Result(done.returncode, done.stdout, done.stderr)
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
