"""Sealbox Desk as a real process (`sealbox desk`) against a real server, and Chromium.

The browser is Debian's /usr/bin/chromium driven by Playwright (never `playwright
install`); without it, browser tests skip and say how to install it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.cli.conftest import SEALBOX, Device, free_port

# The real-process fixtures of the CLI tests: a server per test, profiles run through `sealbox`.
from tests.cli.conftest import devices as devices  # noqa: F401
from tests.cli.conftest import server as server  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")


@dataclass
class DeskProcess:
    process: subprocess.Popen[str]
    url: str  # the one-time address it printed
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def snap(page: Any, name: str) -> None:
    """With SEALBOX_DESK_SCREENSHOTS=DIR, keep a screenshot of this page as DIR/NAME.png
    (docs/desk/: `SEALBOX_DESK_SCREENSHOTS=docs/desk .venv/bin/python -m pytest -m browser
    tests/desk/test_a11y.py`)."""
    folder = os.environ.get("SEALBOX_DESK_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def start_desk(
    device: Device,
    *,
    env_passphrase: bool = False,
    idle_minutes: float = 10,
    lang: str | None = None,
) -> DeskProcess:
    """`sealbox desk --no-browser` on a free port (``--lang`` if given); ready once its
    address is printed and it answers (no fixed sleep)."""
    port = free_port()
    env = dict(device.env)
    if not env_passphrase:
        env.pop("SEALBOX_PASSPHRASE", None)  # the browser unlocks it
    with (device.home.parent / f"desk-{port}.log").open("ab") as log:
        process = subprocess.Popen(
            [
                SEALBOX,
                "desk",
                "--no-browser",
                "--port",
                str(port),
                "--home",
                str(device.home),
                "--idle-minutes",
                str(idle_minutes),
                *(["--lang", lang] if lang else []),
            ],  # fmt: skip
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until printed, or EOF if it died
        match = re.search(r"(http://127\.0\.0\.1:\d+/login\?token=\S+)", line)
        if match is None:
            raise RuntimeError(f"sealbox desk did not print its address: {line!r}")
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("sealbox desk exited during start-up")
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/static/desk.css", timeout=2).is_success:
                    break
            except httpx2.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # polling readiness, bounded by the deadline
        return DeskProcess(process, match.group(1), port)
    except BaseException:
        stop_desk(process)
        raise


def stop_desk(process: subprocess.Popen[str]) -> None:
    if process.stdout is not None:
        process.stdout.close()
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


@pytest.fixture
def desk_for() -> Iterator[Any]:
    started: list[DeskProcess] = []

    def start(device: Device, **kw: Any) -> DeskProcess:
        desk = start_desk(device, **kw)
        started.append(desk)
        return desk

    try:
        yield start
    finally:
        for desk in started:
            stop_desk(desk.process)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "no browser: apt-get install -y chromium (Debian's package; never `playwright install`)"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()
