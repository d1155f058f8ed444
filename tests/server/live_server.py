"""A real ``sealbox-server`` process on 127.0.0.1 for crash, canary and log tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "sealbox-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SEALBOX_DATA_DIR": str(data_dir), **(env or {})}
        if "SEALBOX_DATABASE_URL" not in (env or {}):
            self.env.pop("SEALBOX_DATABASE_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def migrate(self) -> None:
        with self.log_path.open("ab") as log:
            subprocess.run(
                [str(EXE), "migrate"], env=self.env, check=True, stdout=log, stderr=log, cwd=ROOT
            )

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=ROOT,
            start_new_session=True,  # its own process group: kill() takes every worker
        )
        log.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx2.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("sealbox-server exited: " + self.log_path.read_text()[-2000:])
            time.sleep(0.05)
        raise RuntimeError("sealbox-server did not become ready")

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker: no shutdown handlers, no flushing."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
