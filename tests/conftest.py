"""Shared test configuration for Sealbox.

Keep this file general: fixtures that belong to one area live next to its tests.

Hypothesis profiles: "ci" (the default; no deadline, 100 examples) and "dev" (quicker
local runs). Choose one with ``HYPOTHESIS_PROFILE=dev`` or ``pytest --hypothesis-profile=dev``.

``no_leaked_processes``: a test that starts processes (servers, CLIs) uses it, and fails
if any process it started, or any descendant of one, is still alive after the test and
its fixtures are torn down (the leaked process is then killed, so it trips nothing else).
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The CLI keeps its lines whole off a terminal unless $COLUMNS says otherwise
# (clients/reference_cli/render.py), and the tests pin that: the runner's own terminal
# settings must not reach the processes they start (with COLUMNS=80 exported, four CLI
# tests saw their one-line errors wrapped).
for _variable in ("COLUMNS", "LINES"):
    os.environ.pop(_variable, None)

# Every process a test starts inherits os.environ, so it (and every worker it forks)
# carries this variable with the test's own token: /proc tells which ones are still alive.
OWNER_VARIABLE = "SEALBOX_TEST_PROCESS_OWNER"


def processes_owned_by(token: str) -> dict[int, str]:
    """Live (non-zombie) processes whose environment carries ``OWNER_VARIABLE=token``."""
    needle = f"{OWNER_VARIABLE}={token}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":  # exited, not yet reaped
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found[int(entry.name)] = cmdline.strip()[:200]
    return found


EXIT_GRACE_SECONDS = 15.0
"""How long a stopped process may take to go away.  multiprocessing's resource tracker
ignores SIGTERM and exits only once the last process holding its pipe has exited, a
moment after the server it served: waiting for that is not a leak."""


def _still_running(token: str) -> dict[int, str]:
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    while (found := processes_owned_by(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    """Fail the test if a process it started outlives it (and kill that process)."""
    if not Path("/proc/self/environ").exists():  # pragma: no cover - Linux only
        pytest.skip("needs /proc to find leaked processes")
    token = secrets.token_hex(8)
    previous = os.environ.get(OWNER_VARIABLE)
    os.environ[OWNER_VARIABLE] = token
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(OWNER_VARIABLE, None)
        else:
            os.environ[OWNER_VARIABLE] = previous
        leaked = _still_running(token)
        for pid in leaked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if leaked:
        lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in sorted(leaked.items()))
        pytest.fail(f"processes started by this test outlived it (now killed):\n{lines}")
