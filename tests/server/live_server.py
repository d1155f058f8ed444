"""A real ``sealbox-server`` process on 127.0.0.1 for crash, canary, log and edge tests.

`start` waits on ``/readyz`` (a loaded machine may need a minute: ``READY_TIMEOUT``),
and stops the whole process group on every path that does not return ready, so a
failed start leaves nothing running.  Tests that start one also use the
``no_leaked_processes`` fixture (tests/conftest.py), which fails them if anything
they started is still alive afterwards.
"""

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
READY_TIMEOUT = float(os.environ.get("SEALBOX_TEST_READY_TIMEOUT", "120"))
METRICS_TOKEN = "test-metrics-token-" + "m" * 32
METRICS_AUTH = {"authorization": f"Bearer {METRICS_TOKEN}"}
"""What tests scrape /metrics with (servers and apps in tests set SEALBOX_METRICS_TOKEN)."""


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
        self.env = {
            **os.environ,
            "SEALBOX_DATA_DIR": str(data_dir),
            "SEALBOX_METRICS_TOKEN": METRICS_TOKEN,
            **(env or {}),
        }
        if "SEALBOX_DATABASE_URL" not in (env or {}):
            self.env.pop("SEALBOX_DATABASE_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def migrate(self) -> None:
        with self.log_path.open("ab") as log:
            subprocess.run(
                [str(EXE), "migrate"],
                env=self.env,
                check=True,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                timeout=READY_TIMEOUT,
            )

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start ``serve`` and return once ``/readyz`` answers 200; on failure nothing runs."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                start_new_session=True,  # its own process group: kill() takes every worker
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx2.Client(timeout=5) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        "sealbox-server exited: " + self.log_path.read_text()[-2000:]
                    )
                try:
                    if http.get(self.base_url + "/readyz").status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                time.sleep(0.05)  # polling interval, not a wait for readiness
        raise RuntimeError(
            f"sealbox-server was not ready within {timeout:.0f} s: "
            + self.log_path.read_text()[-2000:]
        )

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker: no shutdown handlers, no flushing."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)  # also workers left behind by a dead supervisor
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL the group if it does not end within 30 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # the supervisor is gone: make sure no worker of its group is left

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
