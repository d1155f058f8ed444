"""Benchmark: a large attachment through the `sealbox` CLI against a local server.

Runs everything for real on 127.0.0.1: `sealbox-server serve` (SQLite, filesystem blob
store, temporary data dir), a coordinator and a field device made with the CLI, and the
byte-counting TCP relay of `bench_cli_sync.py` between the CLI and the server, so wire
figures are what crossed the socket (HTTP headers and bodies, not TCP/IP framing).

    .venv/bin/python bench/bench_attachments.py [--size-mib 100] [--runs 1]

Measures, for a file of random bytes:
* attach: ``sealbox report new --attach FILE`` (reads, seals into the sealed copy);
* upload: the field device's ``sealbox sync`` (pushes the report, then the chunks);
* download: the coordinator's ``sealbox attachments get`` (fetch, verify, write);
each as MB/s of the plaintext size (MB = 10^6 bytes; MiB = 2^20) over the command's wall
time (process start to exit: interpreter start and the Argon2id unlock, ~0.3-0.5 s,
included), the peak resident memory of that CLI process (``wait4`` rusage of exactly that
child), and the bytes on the wire against the file size.  A ``status`` command gives the
baseline memory of the CLI doing nothing.

Measured (2-core VM, ext4, SQLite, filesystem blob store, 2026-11-28; other test suites were
running on the same machine, so figures vary by about +-20 %):

    .venv/bin/python bench/bench_attachments.py --size-mib 100 --runs 3

    | 100 MiB                          | attach      | upload (sync) | download (get) |
    | MB/s, whole command              | 116-126     | 35.6-37.8     | 42.1-49.9      |
    | MB/s, net of the fixed ~0.6 s    |             | 45.0-48.5     | 56.0-70.5      |
    | peak RSS of the CLI process      | 116.8 MiB   | 116.8 MiB     | 116.7 MiB      |
    | bytes on the wire vs file size   |             | +2.09 %       | +2.06 %        |

    `sealbox status` alone peaks at 116.7 MiB (Argon2id's 64 MiB unlock plus the interpreter):
    moving the attachment adds nothing measurable.  With --size-mib 1024 the peaks are the same
    (116.7 / 116.9 MiB), upload 36.9 MB/s, download 65.4 MB/s, wire +3.2 %.  The wire
    overhead is the Padmé padding (100 MiB pads to 102 MiB, 1 GiB to 1 GiB + 32 MiB), plus
    16 bytes of tag per 1 MiB chunk and ~760 bytes of signed HTTP per chunk request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli_sync import CountingRelay, free_port  # noqa: E402

BIN = Path(sys.executable).parent
MiB = 1024 * 1024


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, int]:
    """(JSON output, wall seconds, peak RSS in bytes) of one CLI process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} exited {process.returncode}: {err.decode()[-2000:]}")
    return json.loads(out), seconds, usage.ru_maxrss * 1024  # Linux: KiB


def write_random(path: Path, size: int) -> bytes:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            digest.update(block)
            handle.write(block)
            left -= len(block)
    return digest.digest()


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * MiB):
            digest.update(block)
    return digest.digest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--no-relay", action="store_true", help="talk to the server directly (no byte counts)"
    )
    args = parser.parse_args()
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="sealbox-bench-attach-"))
    port = free_port()
    token = secrets.token_urlsafe(32)
    server_env = {
        **os.environ,
        "SEALBOX_DATA_DIR": str(work / "server"),
        "SEALBOX_ADMIN_TOKEN": token,
    }
    server_env.pop("SEALBOX_DATABASE_URL", None)
    (work / "server").mkdir()
    subprocess.run(
        [BIN / "sealbox-server", "migrate"], env=server_env, check=True, capture_output=True
    )
    server = subprocess.Popen(
        [BIN / "sealbox-server", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    relay = CountingRelay(port)
    url = f"http://127.0.0.1:{port if args.no_relay else relay.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env.update(
        SEALBOX_PASSPHRASE="bench: kettle orbit fennel", SEALBOX_ADMIN_TOKEN=token, NO_COLOR="1"
    )

    def argv(home: str, *rest: str) -> list[str]:
        return [str(BIN / "sealbox"), *rest, "--home", str(work / home), "--json"]

    def cli(home: str, *rest: str) -> dict[str, Any]:
        return run_measured(argv(home, *rest), env)[0]

    results = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cli("coord", "org", "create", "--server", url, "--name", "Bench")
        code = cli("coord", "invite", "create", "--role", "field")["code"]
        cli("field", "enroll", code)
        cli("coord", "sync")
        _, _, baseline_rss = run_measured(argv("field", "status"), env)
        # Fixed costs of one command (interpreter start, imports, Argon2id unlock, roster
        # check): a sync / a get with nothing to transfer.
        _, idle_sync_s, _ = run_measured(argv("field", "sync"), env)
        cli("coord", "sync")
        for run in range(args.runs):
            source = work / f"video-{run}.bin"
            original = write_random(source, size)
            report, attach_s, attach_rss = run_measured(
                argv("field", "report", "new", "-f", "kind=video", "--attach", str(source)), env
            )
            relay.reset()
            pushed, upload_s, upload_rss = run_measured(argv("field", "sync"), env)
            up, down = relay.up, relay.down
            assert pushed["attachments_uploaded"] == 1, pushed
            cli("coord", "sync")
            target = work / f"download-{run}.bin"
            relay.reset()
            _, download_s, download_rss = run_measured(
                argv("coord", "attachments", "get", report["report_id"], source.name,
                     "-o", str(target)),
                env,
            )  # fmt: skip
            d_up, d_down = relay.up, relay.down
            assert sha256_file(target) == original
            target.unlink()
            source.unlink()
            results.append(
                {
                    "size_bytes": size,
                    "attach_seconds": round(attach_s, 3),
                    "attach_MBps": round(size / attach_s / 1e6, 1),
                    "attach_peak_rss_MiB": round(attach_rss / MiB, 1),
                    "upload_seconds": round(upload_s, 3),
                    "upload_MBps": round(size / upload_s / 1e6, 1),
                    "upload_MBps_net_of_fixed_costs": round(
                        size / (upload_s - idle_sync_s) / 1e6, 1
                    ),
                    "upload_peak_rss_MiB": round(upload_rss / MiB, 1),
                    "upload_bytes_up": up,
                    "upload_bytes_down": down,
                    "upload_wire_overhead_pct": round((up + down - size) / size * 100, 3),
                    "download_seconds": round(download_s, 3),
                    "download_MBps": round(size / download_s / 1e6, 1),
                    "download_MBps_net_of_fixed_costs": round(
                        size / (download_s - idle_sync_s) / 1e6, 1
                    ),
                    "download_peak_rss_MiB": round(download_rss / MiB, 1),
                    "download_bytes_up": d_up,
                    "download_bytes_down": d_down,
                    "download_wire_overhead_pct": round((d_up + d_down - size) / size * 100, 3),
                }
            )
        print(
            json.dumps(
                {
                    "cli_baseline_peak_rss_MiB": round(baseline_rss / MiB, 1),
                    "idle_sync_seconds": round(idle_sync_s, 3),
                    "runs": results,
                },
                indent=2,
            )
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
