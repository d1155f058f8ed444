"""Benchmark: `sealbox sync` of 1,000 queued reports, its time and its bytes on the wire.

Runs everything for real on 127.0.0.1: a `sealbox-server serve` (SQLite, temporary
data dir), a coordinator and a field device created with the `sealbox` CLI, and a
byte-counting TCP relay between the CLI and the server, so the figures are what
crossed the socket (HTTP headers and bodies; not TCP/IP framing).

    .venv/bin/python bench/bench_cli_sync.py [--reports 1000] [--batch-size N]
    .venv/bin/python bench/bench_cli_sync.py --against REV [--rounds 3]

Prints one JSON object: wall time of the field device's sync (process start to
exit, including interpreter start and the Argon2id unlock), bytes up/down, and
the coordinator's pull of the same reports.  With ``--against REV`` it checks out
REV into a temporary git worktree and alternates rounds of REV and this tree (each
with its own client and server code, through PYTHONPATH, in this venv), then prints
the medians and this tree's ratios to REV: one run, one machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CountingRelay:
    """A TCP relay on 127.0.0.1 that counts the bytes in each direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.up = 0
        self.down = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.up = self.down = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for pair in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pipe, args=pair, daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    if direction == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


ROOT = Path(__file__).resolve().parents[1]
TIMED = ("field_sync_seconds", "coordinator_sync_seconds")


def _one_round(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    argv = [sys.executable, str(tree / "bench" / "bench_cli_sync.py")]
    argv += ["--reports", str(args.reports)]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"the round in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def against(args: argparse.Namespace) -> None:
    import statistics

    base = Path(tempfile.mkdtemp(prefix="sealbox-bench-base-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.against],
                   check=True, capture_output=True)  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    try:
        for _ in range(args.rounds):
            runs["base"].append(_one_round(base, args))
            runs["this"].append(_one_round(ROOT, args))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False, capture_output=True)  # fmt: skip
    medians = {
        side: {
            k: statistics.median(r[k] for r in rows)
            for k in (*TIMED, "field_bytes_up", "field_bytes_down", "coordinator_bytes_down")
        }  # fmt: skip
        for side, rows in runs.items()
    }
    ratios = {k: round(medians["this"][k] / medians["base"][k], 3) for k in medians["this"]}
    summary = {"against": args.against, "rounds": args.rounds, "reports": args.reports}
    summary |= {"medians": medians, "ratio_this_to_base": ratios, "runs": runs}
    print(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--against", help="a git revision to compare with, in alternating rounds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.against:
        against(args)
        return
    work = Path(tempfile.mkdtemp(prefix="sealbox-bench-"))
    port = free_port()
    token = secrets.token_urlsafe(32)
    server_env = {**os.environ, "SEALBOX_DATA_DIR": str(work / "server")}
    server_env["SEALBOX_ADMIN_TOKEN"] = token
    (work / "server").mkdir()
    migrate = [BIN / "sealbox-server", "migrate"]
    subprocess.run(migrate, env=server_env, check=True, capture_output=True)
    server = subprocess.Popen(
        [BIN / "sealbox-server", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    relay = CountingRelay(port)
    url = f"http://127.0.0.1:{relay.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env.update(SEALBOX_PASSPHRASE="bench: kettle orbit fennel", SEALBOX_ADMIN_TOKEN=token)

    def cli(home: str, *argv: str) -> dict:
        done = subprocess.run(
            [BIN / "sealbox", *argv, "--home", str(work / home), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)

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
        queued = cli("field", "outbox")["count"]
        sync_args = ["sync"] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        relay.reset()
        started = time.perf_counter()
        pushed = cli("field", *sync_args)
        field_seconds = time.perf_counter() - started
        field_up, field_down = relay.up, relay.down
        relay.reset()
        started = time.perf_counter()
        pulled = cli("coord", "sync")
        coord_seconds = time.perf_counter() - started
        result = {
            "reports": args.reports,
            "envelopes_queued": queued,
            "field_sync_seconds": round(field_seconds, 3),
            "field_bytes_up": field_up,
            "field_bytes_down": field_down,
            "field_bytes_per_report": round((field_up + field_down) / args.reports, 1),
            "field_requests": pushed["requests"],
            "purged": pushed["purged"],
            "coordinator_sync_seconds": round(coord_seconds, 3),
            "coordinator_bytes_up": relay.up,
            "coordinator_bytes_down": relay.down,
            "coordinator_reports": pulled["reports"],
        }
        print(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
