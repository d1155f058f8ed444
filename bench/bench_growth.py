"""Growth: ingest and feed on a server holding ``--revisions`` stored revisions, against an
empty server, in alternating rounds of one run.

The history is built through the server's own push path: a real ``sealbox-server serve``
(the default configuration: 2 workers) receives signed CBOR pushes of 100 envelopes
(2 KiB plaintext, 2,430 bytes sealed, reports of 10 revisions chained by parents) from
``--history-devices`` field devices of one organisation, pushed by ``--build-procs``
client processes that seal as they go.  Every item must come back ``created``.

Then both servers run side by side (the big one and a fresh empty one, each with an
organisation of one coordinator and field devices) and, for ``--rounds`` rounds,
alternately (empty, then big, so a change in the machine's load hits both alike):

* **ingest**: 4 clients push ``--batches`` batches of 100 each concurrently (fresh devices,
  their chains pre-generated and pre-signed; every item must be ``created``) into the
  organisation that holds the history;
* **feed**: the coordinator pulls what that round ingested through ``GET /changes``
  (pages of 2,000, JSON, pipelined as ``bench_server.py`` does, every envelope decoded);
* **feed_history**: the coordinator pulls as many revisions from an older part of the
  organisation's feed (big: a random offset in the history; empty: from the start).

Per round it records the server's CPU (workers and, on PostgreSQL, every ``postgres``
process), the bytes the server's processes wrote (``/proc/PID/io``) and the machine's
iowait, each per revision; it prints one JSON object with every round's figures and the
median of the per-round ratios big/empty (1.0: no slowdown with growth).

``--history-dir DIR`` keeps the big server's data (the SQLite database, or the state of a
PostgreSQL database named ``sealbox_growth_big``) so that later runs, with other server
code, measure against the same history without building it again; without it the
history lives in a temporary directory and is deleted at the end.

    .venv/bin/python bench/bench_growth.py --backend sqlite --revisions 1000000 \\
        --history-dir /tmp/growth-sqlite
    .venv/bin/python bench/bench_growth.py --backend postgresql --revisions 1000000 \\
        --history-dir /tmp/growth-pg
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_server import (  # noqa: E402
    BenchOrg,
    Signed,
    b64,
    create_org,
    free_port,
    fresh_database,
    seal_chain,
    unb64,
)

from crypto import (  # noqa: E402
    SigningKey,
    VerifyKey,
    encoding,
)
from sync.cursor import decode_cursor, encode_cursor  # noqa: E402
from sync.roster import Roster  # noqa: E402

SERVER_TREE = ROOT  # replaced by --server-tree
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/"
BATCH = 100
CLIENTS = 4


# ---------------------------------------------------------------------------------------
# Processes and /proc counters


def _children(pid: int) -> list[int]:
    """``pid`` and every live process whose parent is ``pid`` (uvicorn's workers)."""
    out = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _postgres_pids() -> list[int]:
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "postgres":
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def _cpu_and_writes(pids: list[int]) -> tuple[float, int]:
    ticks = os.sysconf("SC_CLK_TCK")
    cpu, written = 0.0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    written += int(line.split()[1])
        except OSError:
            continue
    return cpu, written


def _iowait_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return int(fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    data_dir: Path
    database_url: str | None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SERVER_TREE)  # the server code under test (--server-tree)
        env["SEALBOX_DATA_DIR"] = str(self.data_dir)
        env["SEALBOX_ADMIN_TOKEN"] = self.admin_token
        # The build pushes far more than a device's default per-minute budget.
        env["SEALBOX_DEVICE_REQUESTS_PER_MINUTE"] = "1000000"
        env["SEALBOX_ORG_REQUESTS_PER_MINUTE"] = "1000000"
        if self.database_url:
            env["SEALBOX_DATABASE_URL"] = self.database_url
        return env

    def start(self) -> None:
        exe = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]
        subprocess.run([*exe, "migrate"], env=self.env(), check=True, capture_output=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*exe, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx2.get(self.base + "/readyz").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.name} server did not become ready")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def counters(self) -> tuple[float, int]:
        assert self.proc is not None
        pids = _children(self.proc.pid)
        if self.database_url:
            pids += _postgres_pids()
        return _cpu_and_writes(pids)

    def server_key(self) -> VerifyKey:
        return VerifyKey(unb64(httpx2.get(self.base + "/v1/server").json()["server_key"]))


# ---------------------------------------------------------------------------------------
# Organisation state kept with a history (so later runs can reuse it)


def _save_org(org: BenchOrg, spare: list[SigningKey], path: Path, stored: int) -> None:
    state = {
        "org_id": org.org_id.hex(),
        "coordinator": org.coordinator.private_bytes().hex(),
        "roster": encoding.encode(org.roster.to_cbor()).hex(),
        "spare_devices": [d.private_bytes().hex() for d in spare],
        "stored": stored,
    }
    path.write_text(json.dumps(state, indent=1))


def _load_org(path: Path) -> tuple[BenchOrg, list[SigningKey], int]:
    state = json.loads(path.read_text())
    org_id = bytes.fromhex(state["org_id"])
    roster = Roster.from_cbor(encoding.decode(bytes.fromhex(state["roster"])))
    org = BenchOrg(
        org_id,
        f"/v1/orgs/{b64(org_id)}",
        SigningKey(bytes.fromhex(state["coordinator"])),
        roster,
        [],
    )
    spare = [SigningKey(bytes.fromhex(s)) for s in state["spare_devices"]]
    return org, spare, int(state["stored"])


# ---------------------------------------------------------------------------------------
# Chains of envelopes


def _chain(
    org_id: bytes, roster: Roster, device: SigningKey, count: int, content: bytes
) -> list[bytes]:
    """A device's first ``count`` envelopes, encoded (`bench_server.seal_chain`)."""
    return [env.to_bytes() for env in seal_chain(org_id, roster, device, count, content)]


def _push(http: httpx2.Client, signer: Signed, org_path: str, key: SigningKey, body: Any) -> None:
    data, headers = signer.request("POST", org_path + "/push", body, key, cbor=True)
    _post_checked(http, org_path, data, headers)


def _post_checked(http: httpx2.Client, org_path: str, data: bytes, headers: dict[str, str]) -> None:
    resp = http.post(org_path + "/push", content=data, headers=headers)
    if resp.status_code != 200:
        raise RuntimeError(f"push: {resp.status_code} {resp.text[:300]}")
    if resp.headers.get("content-type", "").startswith("application/cbor"):
        results = cbor2.loads(resp.content)["results"]
    else:
        results = resp.json()["results"]
    bad = [x for x in results if x["status"] != "created"]
    if bad:
        raise RuntimeError(f"push refused an item: {bad[0]}")


# The build's worker processes get their work by fork (globals set before the pool starts).
_BUILD: dict[str, Any] = {}


def _build_device(task: tuple[bytes, int]) -> int:
    seed, count = task
    base, org_id, org_path, roster = (
        _BUILD["base"],
        _BUILD["org_id"],
        _BUILD["org_path"],
        _BUILD["roster"],
    )
    device = SigningKey(seed)
    content = os.urandom(2048)
    signer = Signed(base)
    envelopes = _chain(org_id, roster, device, count, content)
    with httpx2.Client(base_url=base, timeout=600, headers={"accept": "application/cbor"}) as http:
        for start in range(0, len(envelopes), BATCH):
            _push(http, signer, org_path, device, {"envelopes": envelopes[start : start + BATCH]})
    return len(envelopes)


def build_history(
    server: Server, revisions: int, n_devices: int, procs: int, spare: int
) -> tuple[BenchOrg, list[SigningKey]]:
    http = httpx2.Client(base_url=server.base, timeout=600)
    signer = Signed(server.base)
    t0 = time.perf_counter()
    org = create_org(
        http, signer, server.server_key(), server.admin_token, n_devices + spare, server.base
    )
    history_devices, spare_devices = org.devices[:n_devices], org.devices[n_devices:]
    per = [revisions // n_devices + (k < revisions % n_devices) for k in range(n_devices)]
    _BUILD.update(base=server.base, org_id=org.org_id, org_path=org.path, roster=org.roster)
    tasks = [(d.private_bytes(), n) for d, n in zip(history_devices, per, strict=True) if n]
    done = 0
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        for n in pool.imap_unordered(_build_device, tasks):
            done += n
            print(
                f"[build] {done}/{revisions} stored, {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    http.close()
    return org, spare_devices


# ---------------------------------------------------------------------------------------
# Measurement


@dataclass
class Target:
    """One server under measurement: its org, the prepared pushes of each round."""

    server: Server
    org: BenchOrg
    stored: int  # the org's last server_seq before the rounds
    epoch: bytes = b""
    # per round: (device, signed push request) in push order
    rounds: list[list[tuple[SigningKey, tuple[bytes, dict[str, str]]]]] = field(
        default_factory=list
    )
    results: list[dict[str, float]] = field(default_factory=list)


def _epoch(target: Target, http: httpx2.Client, signer: Signed) -> bytes:
    path = f"{target.org.path}/changes?cursor=&limit=1"
    _, headers = signer.request("GET", path, None, target.org.coordinator)
    resp = http.get(path, headers=headers)
    resp.raise_for_status()
    decoded = decode_cursor(resp.json()["cursor"])
    assert decoded is not None
    return decoded[0]


def prepare(target: Target, devices: list[SigningKey], rounds: int, batches: int) -> None:
    """Warm-up pushes (each device's first batch, with its key envelope), then every
    round's pushes, pre-signed."""
    server, org = target.server, target.org
    signer = Signed(server.base)
    content = os.urandom(2048)
    per_device = BATCH * (1 + rounds * batches)
    chains = [_chain(org.org_id, org.roster, d, per_device, content) for d in devices]
    with httpx2.Client(base_url=server.base, timeout=600) as http:
        for device, chain in zip(devices, chains, strict=True):
            _push(http, signer, org.path, device, {"envelopes": chain[:BATCH]})
        target.stored += len(devices) * BATCH
        target.epoch = _epoch(target, http, signer)
    for r in range(rounds):
        per_client: list[tuple[SigningKey, tuple[bytes, dict[str, str]]]] = []
        for device, chain in zip(devices, chains, strict=True):
            first = BATCH * (1 + r * batches)
            for b in range(batches):
                part = chain[first + b * BATCH : first + (b + 1) * BATCH]
                per_client.append(
                    (
                        device,
                        signer.request(
                            "POST", org.path + "/push", {"envelopes": part}, device, cbor=True
                        ),
                    )
                )
        target.rounds.append(per_client)


def _pull(target: Target, http: httpx2.Client, signer: Signed, after: int, count: int) -> float:
    """Seconds to pull ``count`` revisions after ``after``, pipelined, decoding each envelope."""
    org = target.org
    limit = 2000

    def get(cursor: str) -> bytes:
        path = f"{org.path}/changes?cursor={cursor}&limit={limit}"
        _, headers = signer.request("GET", path, None, org.coordinator)
        resp = http.get(path, headers=headers)
        resp.raise_for_status()
        return resp.content

    pulled = 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as fetcher:
        body = get(encode_cursor(target.epoch, after))
        while True:
            page = json.loads(body)
            ahead = None
            more = page["more"] and pulled + len(page["items"]) < count
            if more:
                ahead = fetcher.submit(get, page["cursor"])
            for item in page["items"]:
                unb64(item["envelope"])
            pulled += len(page["items"])
            if not more or ahead is None:
                break
            body = ahead.result()
    seconds = time.perf_counter() - t0
    if pulled < count:
        raise SystemExit(f"{target.server.name}: feed returned {pulled} of {count} revisions")
    return seconds


def measure_round(target: Target, r: int, history: int) -> dict[str, float]:
    server = target.server
    pushes = target.rounds[r]
    total = len(pushes) * BATCH
    by_device: dict[bytes, list[tuple[bytes, dict[str, str]]]] = {}
    for device, request in pushes:
        by_device.setdefault(device.verify_key.key_id, []).append(request)
    errors: list[str] = []

    def client(requests: list[tuple[bytes, dict[str, str]]]) -> None:
        try:
            with httpx2.Client(base_url=server.base, timeout=600) as c:
                for data, headers in requests:
                    _post_checked(c, target.org.path, data, headers)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(reqs,)) for reqs in by_device.values()]
    cpu0, written0 = server.counters()
    io0 = _iowait_seconds()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ingest_s = time.perf_counter() - t0
    cpu1, written1 = server.counters()
    io1 = _iowait_seconds()
    if errors:
        raise SystemExit(f"{server.name}: push errors: {errors[:3]}")
    after = target.stored
    target.stored += total
    signer = Signed(server.base)
    with httpx2.Client(base_url=server.base, timeout=600) as http:
        feed_s = _pull(target, http, signer, after, total)
        old = random.randrange(0, max(1, history - total)) if history > total else 0
        feed_history_s = _pull(target, http, signer, old, total)
    return {
        "ingest_revisions_per_second": total / ingest_s,
        "ingest_cpu_us_per_revision": (cpu1 - cpu0) / total * 1e6,
        "ingest_written_bytes_per_revision": (written1 - written0) / total,
        "ingest_iowait_us_per_revision": (io1 - io0) / total * 1e6,
        "feed_revisions_per_second": total / feed_s,
        "feed_history_revisions_per_second": total / feed_history_s,
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--revisions", type=int, default=1_000_000, help="stored history")
    parser.add_argument("--history-devices", type=int, default=200)
    parser.add_argument("--build-procs", type=int, default=3, help="client processes building")
    parser.add_argument("--history-dir", type=Path, default=None, help="keep/reuse the history")
    parser.add_argument(
        "--pg-database", default="sealbox_growth_big", help="PostgreSQL: the history's database"
    )
    parser.add_argument(
        "--pg-server",
        default=PG_BASE,
        help="PostgreSQL: the server's URL up to the database name (e.g. another cluster's port, "
        "to measure a setting such as shared_buffers without changing the shared instance)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--warmup-rounds",
        type=int,
        default=1,
        help="rounds measured first and left out (a freshly started server on a big "
        "database reads its pages in from disk first)",
    )
    parser.add_argument("--batches", type=int, default=50, help="batches of 100 per client a round")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--server-tree",
        type=Path,
        default=ROOT,
        help="run the servers from this source tree (e.g. a worktree of another commit)",
    )
    parser.add_argument(
        "--profile", default=None, help="py-spy binary: record the big server's ingest rounds"
    )
    args = parser.parse_args()
    global SERVER_TREE  # noqa: PLW0603 - read by Server.env
    SERVER_TREE = args.server_tree.resolve()

    postgres = args.backend == "postgresql"
    keep = args.history_dir is not None
    history_dir = args.history_dir or Path(tempfile.mkdtemp(prefix="sealbox-growth-"))
    history_dir.mkdir(parents=True, exist_ok=True)
    state_file = history_dir / "growth-state.json"
    empty_dir = Path(tempfile.mkdtemp(prefix="sealbox-growth-empty-"))
    pg_base = args.pg_server.rstrip("/") + "/"
    big = Server("big", history_dir / "data", pg_base + args.pg_database if postgres else None)
    empty = Server("empty", empty_dir, pg_base + "sealbox_growth_empty" if postgres else None)
    spare_needed = CLIENTS * 8
    result: dict[str, Any] = {"backend": args.backend}
    try:
        if state_file.exists():
            org, spare, stored = _load_org(state_file)
            big.start()
            result["history_built_seconds"] = None
        else:
            if postgres and big.database_url:
                fresh_database(big.database_url)
            shutil.rmtree(big.data_dir, ignore_errors=True)
            big.start()
            t0 = time.perf_counter()
            org, spare = build_history(
                big, args.revisions, args.history_devices, args.build_procs, spare_needed
            )
            stored = args.revisions
            result["history_built_seconds"] = round(time.perf_counter() - t0)
            result["history_build_revisions_per_second"] = round(
                args.revisions / (time.perf_counter() - t0)
            )
            _save_org(org, spare, state_file, stored)
        history = stored
        if args.build_only:
            print(json.dumps(result, indent=2))
            return
        if len(spare) < CLIENTS:
            raise SystemExit(f"{state_file}: no fresh devices left; rebuild the history")
        devices, spare = spare[:CLIENTS], spare[CLIENTS:]
        big_target = Target(big, org, stored)
        rounds = args.warmup_rounds + args.rounds
        prepare(big_target, devices, rounds, args.batches)
        _save_org(org, spare, state_file, big_target.stored)

        if postgres and empty.database_url:
            fresh_database(empty.database_url)
        empty.start()
        with httpx2.Client(base_url=empty.base, timeout=600) as http:
            empty_org = create_org(
                http, Signed(empty.base), empty.server_key(), empty.admin_token, CLIENTS, empty.base
            )
        empty_target = Target(empty, empty_org, 0)
        prepare(empty_target, empty_org.devices, rounds, args.batches)

        spy = None
        for r in range(rounds):
            empty_target.results.append(measure_round(empty_target, r, empty_target.stored))
            if args.profile and r == rounds - 1 and big.proc is not None:
                spy = subprocess.Popen(
                    [
                        args.profile,
                        "record",
                        "--nonblocking",
                        "-o",
                        str(history_dir / "profile.txt"),
                        "-f",
                        "raw",
                        "-r",
                        "100",
                        "--subprocesses",
                        "-p",
                        str(big.proc.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1)
            big_target.results.append(measure_round(big_target, r, history))
            if spy is not None:
                spy.send_signal(2)
                spy.wait(60)
            print(f"[round {r + 1}] empty {empty_target.results[-1]}", file=sys.stderr, flush=True)
            print(f"[round {r + 1}] big   {big_target.results[-1]}", file=sys.stderr, flush=True)
        _save_org(org, spare, state_file, big_target.stored)
        del empty_target.results[: args.warmup_rounds], big_target.results[: args.warmup_rounds]

        result.update(
            warmup_rounds=args.warmup_rounds,
            stored_revisions=history,
            rounds=args.rounds,
            revisions_per_round=CLIENTS * args.batches * BATCH,
            clients=CLIENTS,
        )
        for metric in empty_target.results[0]:
            e = [x[metric] for x in empty_target.results]
            b = [x[metric] for x in big_target.results]
            result[metric] = {
                "empty": _summary(e),
                "big": _summary(b),
                "ratio_big_to_empty_median": round(
                    statistics.median(
                        bb / ee if ee else float("nan") for bb, ee in zip(b, e, strict=True)
                    ),
                    3,
                ),
            }
        print(json.dumps(result, indent=2))
    finally:
        big.stop()
        empty.stop()
        shutil.rmtree(empty_dir, ignore_errors=True)
        if postgres and empty.database_url:
            _drop(empty.database_url)
        if not keep:
            shutil.rmtree(history_dir, ignore_errors=True)
            if postgres and big.database_url:
                _drop(big.database_url)


def _drop(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


if __name__ == "__main__":
    main()
