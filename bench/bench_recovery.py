"""Benchmark: restoring an organisation's archive from trustee shares (PROTOCOL §20.4).

Runs everything for real on 127.0.0.1: a `sealbox-server serve` (SQLite, temporary data
dir), a founding coordinator who sets recovery up (3 of 5) at once, a field device that
files N reports (`report import`) and syncs, and the founder's sync.  Then the founder's
profile is deleted (the laptop seized) and a new machine restores from 3 shares:

    .venv/bin/python bench/bench_recovery.py [--reports 10000]

Prints one JSON object: the wall time (process start to exit, interpreter start and the
Argon2id key file wrap and unwraps included) of `sealbox recovery restore`, of the restored
coordinator's first `sealbox sync` (pull, verify and decrypt the whole archive, build its
index), and of a `reports list` that counts what it reads (and the founder's, before the
seizure, to compare); and that count.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sealbox-bench-recovery-"))
    port = free_port()
    token = secrets.token_urlsafe(32)
    server_env = {**os.environ, "SEALBOX_DATA_DIR": str(work / "server")}
    server_env["SEALBOX_ADMIN_TOKEN"] = token
    (work / "server").mkdir()
    subprocess.run([BIN / "sealbox-server", "migrate"], env=server_env, check=True,
                   capture_output=True)  # fmt: skip
    server = subprocess.Popen(
        [BIN / "sealbox-server", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env.update(SEALBOX_PASSPHRASE="bench passphrase", SEALBOX_ADMIN_TOKEN=token)

    def cli(home: str, *argv: str) -> tuple[object, float]:
        started = time.perf_counter()
        done = subprocess.run(
            [BIN / "sealbox", *argv, "--home", str(work / home), "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"sealbox {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout), seconds

    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cli("founder", "org", "create", "--server", url, "--name", "Bench")
        setup, _ = cli("founder", "recovery", "setup", "--threshold", "3", "--shares", "5")
        assert isinstance(setup, dict)
        invite, _ = cli("founder", "invite", "create", "--role", "field")
        assert isinstance(invite, dict)
        cli("field", "enroll", invite["code"])
        cli("founder", "sync")
        source = work / "reports.jsonl"
        with source.open("w") as handle:
            for i in range(args.reports):
                record = {
                    "title": f"Incident {i}",
                    "place": "Checkpoint 4, northern road",
                    "date": "2026-11-28",
                    "description": "Two people detained at the checkpoint; vehicle searched. " * 3,
                }
                handle.write(json.dumps(record) + "\n")
        cli("field", "report", "import", str(source))
        cli("field", "sync")
        cli("founder", "sync")
        founder, _ = cli("founder", "status")
        assert isinstance(founder, dict)
        _, founder_list_seconds = cli("founder", "reports", "list")  # for comparison
        shutil.rmtree(work / "founder")  # seized

        shares = work / "shares.txt"
        shares.write_text("\n".join(setup["shares"][i] for i in (0, 2, 4)) + "\n")
        restore_argv = ["recovery", "restore", "--locator", setup["locator"]]
        restore_argv += ["--shares-file", str(shares), "--revoke", founder["device_id"]]
        _, restore_seconds = cli("restored", *restore_argv)
        _, sync_seconds = cli("restored", "sync")
        listed, list_seconds = cli("restored", "reports", "list")
        assert isinstance(listed, list)
        status, _ = cli("restored", "status")
        assert isinstance(status, dict)
        result = {
            "reports": args.reports,
            "restore_seconds": round(restore_seconds, 3),
            "first_sync_seconds": round(sync_seconds, 3),
            "reports_list_seconds": round(list_seconds, 3),
            "founder_reports_list_seconds": round(founder_list_seconds, 3),
            "total_seconds": round(restore_seconds + sync_seconds, 3),
            "reports_read": len(listed),
            "findings": len(status["findings"]),
        }
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
    finally:
        server.terminate()
        server.wait(20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
