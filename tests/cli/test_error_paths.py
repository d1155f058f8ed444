"""No `sealbox` command ends in a traceback: bad paths, permissions, full disk, cut network.

One test, one server, one organisation.  Every command is enumerated from the Typer
app (a new command is covered without editing this file, as long as its required
parameters have a placeholder below) and run as the installed executable with:
* a home below a regular file (ENOTDIR: a bad path);
* a read-only home (a read-only copy of the coordinator's profile, or a read-only
  directory for the commands that create a profile);
* a server that closes every connection in the middle of its answer;
plus the paths the issue names (a missing import file, an output in a missing
directory, /dev/full as file and as stdout, a read-only output directory).

Each run must end with a documented exit code (main.py's docstring and README's table;
70, "a bug", never counts), a one-line ``error:`` message on stderr, the same code in
the ``--json`` error object, and no traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from clients.reference_cli import main
from clients.reference_cli.common import Code
from sync.recovery import RecoveryLocator
from tests.cli.conftest import (
    CAN_BE_DENIED,
    PASSPHRASE,
    CuttingProxy,
    Device,
    LiveServer,
    Result,
    read_only,
)

README = Path(__file__).resolve().parents[2] / "README.md"
CREATES = {("org", "create"), ("enroll",), ("recovery", "restore")}
"""Commands that make a new profile (their read-only case is a read-only directory)."""
TALKS_TO_SERVER = {
    ("sync",),
    ("org", "create"),
    ("invite", "create"),
    ("enroll",),
    ("devices", "list"),
    ("devices", "revoke"),
    ("invites", "create"),
    ("invites", "list"),
    ("invites", "cancel"),
    ("grant",),
    ("rotate",),
    ("rotations", "list"),
    ("rotations", "apply"),
}
"""Commands that must reach the server whatever the profile holds: a cut connection is 4."""


def documented_codes() -> set[int]:
    doc = {int(m) for m in re.findall(r"^ {4}(\d+) {2,}\S", main.__doc__ or "", re.M)}
    readme = {int(m) for m in re.findall(r"^\| `?(\d+)`? \|", README.read_text(), re.M)}
    assert doc == readme == {int(c) for c in Code}, "main.py, README and Code must agree"
    return doc - {Code.BUG}


def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        subcommands = getattr(command, "commands", None)
        if subcommands is None or getattr(command, "invoke_without_command", False):
            yield path, command  # a group that also runs on its own (`outbox`) is a command
        if subcommands is None:
            return
        for name, sub in sorted(subcommands.items()):
            yield from walk(sub, (*path, name))

    yield from walk(get_command(main.app), ())


@dataclass
class Case:
    name: str
    argv: list[str]
    home: Path
    as_json: bool = True
    unprivileged: bool = False
    stdout: str | None = None  # a file to send standard output to
    code: int | None = None  # the exact exit code expected, when the case names one
    says: tuple[str, ...] = ()  # what stderr must say, when the case names it
    result: Result | None = field(default=None, repr=False)


def _argv(path: tuple[str, ...], command: Any, placeholders: dict[str, str]) -> list[str]:
    argv = list(path)
    for param in command.params:
        if not param.required:
            continue
        if param.name not in placeholders:
            pytest.fail(f"`sealbox {' '.join(path)}`: add a placeholder for {param.name!r}")
        value = placeholders[param.name]
        if param.param_type_name == "argument":
            argv.append(value)
        else:
            argv += [max(param.opts, key=len), value]
    return argv


def _run(env: dict[str, str], case: Case) -> Case:
    device = Device(case.home, dict(env))
    if case.stdout is None:
        case.result = device.run(
            *case.argv,
            check=False,
            as_json=case.as_json,
            unprivileged=case.unprivileged,
            timeout=60,
        )
    else:
        with open(case.stdout, "w") as handle:
            case.result = device.run(
                *case.argv,
                check=False,
                as_json=case.as_json,
                unprivileged=case.unprivileged,
                timeout=60,
                stdout=handle,
            )
    return case


def _check(case: Case, codes: set[int]) -> list[str]:
    r = case.result
    assert r is not None
    problems = []
    label = f"[{case.name}] sealbox {' '.join(case.argv)} -> {r.code}"
    output = r.stdout + r.stderr
    if "Traceback" in output or "Errno" in output:
        problems.append(f"{label}: a traceback or a raw exception\n{r.stderr}")
    if r.code not in codes:
        problems.append(f"{label}: undocumented exit code\n{r.stderr}")
    if case.code is not None and r.code != case.code:
        problems.append(f"{label}: expected exit {case.code}\n{r.stderr}")
    missing = [s for s in case.says if s not in r.stderr]
    if missing:
        problems.append(f"{label}: stderr does not say {missing}\n{r.stderr}")
    if r.code not in (0, Code.USAGE):
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        if not lines or not lines[-1].startswith("error: ") or len(lines[-1]) > 500:
            problems.append(f"{label}: no one-line `error:` message\n{r.stderr}")
        if case.as_json and case.stdout is None:
            last = r.stdout.strip().splitlines()[-1:] or ["{}"]
            if json.loads(last[0]).get("exit_code") != r.code:
                problems.append(f"{label}: --json error object missing\n{r.stdout}")
    return problems


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_every_command_fails_cleanly_on_bad_paths_permissions_full_disk_and_cut_network(
    shared_server: LiveServer, tmp_path: Path
) -> None:
    codes = documented_codes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env.update(
        SEALBOX_PASSPHRASE=PASSPHRASE,
        SEALBOX_ADMIN_TOKEN=shared_server.admin_token,
        NO_COLOR="1",
    )
    proxy = CuttingProxy(shared_server.port)
    try:
        # One organisation, through the proxy (passing for now).
        coord = Device(tmp_path / "coordinator", dict(env))
        coord.run("org", "create", "--server", proxy.url, "--name", "Errors")
        invite = coord.run("invite", "create").json["code"]
        field_device = Device(tmp_path / "field", dict(env))
        field_id = field_device.run("enroll", invite, "--label", "f").json["device_id"]
        report = field_device.run("report", "new", "-f", "place=Market").json["report_id"]
        field_device.run("sync")
        coord.run("sync")

        a_file = tmp_path / "a-file"
        a_file.write_text("not a directory\n")
        good_import = tmp_path / "good.jsonl"
        good_import.write_text('{"place": "Depot"}\n')
        ro_profile = read_only(_copy(coord.home, tmp_path / "ro-profile"))
        ro_dir = tmp_path / "ro-dir"
        ro_dir.mkdir()
        read_only(ro_dir)
        placeholders = {
            "report_id": report,
            "name": "photo.jpg",
            "code": invite,  # used, but no enroll case gets as far as the server
            "source": str(good_import),
            "device_id": field_id,
            "server": proxy.url,
            "output": str(tmp_path / "attachment-out"),
            "field": "place=Resolved",
            "reports": report,  # evidence export
            "bundle": str(a_file),  # evidence verify: not a bundle
            "locator": RecoveryLocator(
                proxy.url, bytes.fromhex(coord.run("status").json["org_id"]), bytes(32)
            ).encode(),
            "to": str(tmp_path),  # outbox export: the coordinator's outbox is empty (1)
            "file": str(a_file),  # relay import, import: not a carried file (1)
            "invite_id": "5eed" * 8,  # no such invite: looked up on the server
        }
        listed = list(commands())
        assert len(listed) >= 20, [p for p, _ in listed]
        # org create's --name is required too: one name, two meanings (arg vs option).
        placeholders_for = {
            ("org", "create"): {**placeholders, "name": "Errors"},
            ("grant",): {**placeholders, "to": field_id},
        }

        def argv_of(path: tuple[str, ...], command: Any) -> list[str]:
            return _argv(path, command, placeholders_for.get(path, placeholders))

        fresh = iter(range(10_000))
        passing: list[Case] = []
        cutting: list[Case] = []
        for path, command in listed:
            argv = argv_of(path, command)
            slug = "-".join(path)
            passing.append(Case("home below a file", argv, a_file / "home"))
            if CAN_BE_DENIED:
                home = ro_dir / "new" if path in CREATES else ro_profile
                passing.append(Case("read-only home", argv, home, unprivileged=True))
            home = (
                tmp_path / f"new-{next(fresh)}"
                if path in CREATES
                else _copy(coord.home, tmp_path / f"cut-{slug}")
            )
            cutting.append(
                Case(
                    "connection cut mid-answer",
                    argv,
                    home,
                    code=Code.NETWORK if path in TALKS_TO_SERVER else None,
                    says=("closed in the middle of an answer",) if path in TALKS_TO_SERVER else (),
                )
            )

        def copy() -> Path:
            return _copy(coord.home, tmp_path / f"copy-{next(fresh)}")

        passing += [
            Case(
                "missing import file",
                ["report", "import", "/nonexistent.jsonl"],
                copy(),
                as_json=False,
                code=Code.FILES,
                says=("/nonexistent.jsonl", "No such file or directory"),
            ),
            Case(
                "output in a missing directory",
                ["attachments", "get", report, "photo.jpg", "-o", "/no/such/dir/x"],
                copy(),
                as_json=False,
                code=Code.FILES,
                says=("/no/such/dir", "no such directory"),
            ),
            Case(
                "export to a full disk",
                ["reports", "export", "-o", "/dev/full"],
                copy(),
                as_json=False,
                code=Code.FILES,
                says=("/dev/full", "No space left on device", "the disk is full"),
            ),
            Case(
                "export to stdout on a full disk",
                ["reports", "export", "--format", "csv"],
                copy(),
                as_json=False,
                stdout="/dev/full",
                code=Code.FILES,
                says=("No space left on device",),
            ),
            Case(
                "--json error object to a full stdout",
                ["status"],
                a_file / "home",
                stdout="/dev/full",
                code=Code.LOCAL,
                says=("no sealbox profile",),
            ),
            Case(
                "--version to a full stdout",
                ["--version"],
                a_file / "home",
                as_json=False,
                stdout="/dev/full",
                code=Code.FILES,
                says=("No space left on device",),
            ),
            Case(
                "attach a missing file",
                ["report", "new", "-f", "a=1", "--attach", "/nonexistent.jpg"],
                copy(),
                as_json=False,
                says=("nonexistent.jpg",),
            ),
        ]
        if CAN_BE_DENIED:
            passing += [
                Case(
                    "export into a read-only directory",
                    ["reports", "export", "-o", str(ro_dir / "out.json")],
                    copy(),
                    as_json=False,
                    unprivileged=True,
                    code=Code.FILES,
                    says=(str(ro_dir / "out.json"), "Permission denied"),
                ),
                Case(
                    "create a profile in a read-only directory",
                    ["enroll", invite],
                    ro_dir / "enrolled",
                    as_json=False,
                    unprivileged=True,
                    code=Code.FILES,
                    says=(str(ro_dir), "Permission denied"),
                ),
            ]

        with ThreadPoolExecutor(4) as pool:  # CPU-bound: interpreter start, Argon2id
            done = list(pool.map(lambda c: _run(env, c), passing))
        proxy.cutting = True
        with ThreadPoolExecutor(len(cutting)) as pool:  # mostly asleep in retry backoff
            done += list(pool.map(lambda c: _run(env, c), cutting))
        assert proxy.cut_count > 0
    finally:
        proxy.close()

    problems = [p for case in done for p in _check(case, codes)]
    assert not problems, "\n\n".join(problems)
