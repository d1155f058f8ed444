"""Server throughput: ingest (push) and the changes feed against a real server process.

Starts ``sealbox-server serve`` on 127.0.0.1 (default configuration, SQLite in a
temporary data dir; ``--database-url`` for PostgreSQL), creates an organisation
with one coordinator and ``--clients`` field devices, pre-generates every
envelope (``--plaintext`` bytes of content, batches of ``--batch``) and every
signed request, then measures:

* ingest: ``--clients`` threads push their batches concurrently (revisions/s);
* feed: the coordinator pulls the whole feed, page by page (revisions/s,
  decoding each page's JSON and every envelope's base64url).

Prints one JSON object, with the server's CPU per ingested revision (its processes
and, on PostgreSQL, the backends serving the bench's database, from /proc) and the
whole machine's.  Budgets (issue 3): ingest >= 4,000 rev/s, feed >= 20,000 rev/s on
SQLite; PostgreSQL not slower.

    .venv/bin/python bench/bench_server.py [--batches 50] [--database-url URL]
    # this checkout against another commit's code (`git worktree add --detach DIR REV`),
    # alternating rounds, medians and the ratios this/other:
    .venv/bin/python bench/bench_server.py --batches 30 --against DIR --rounds 5
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import httpx2

ROOT = Path(__file__).resolve().parent.parent
# The clients seal and sign with the crypto/ and sync/ of the tree under test (--against
# runs each tree's rounds in a process of their own): envelope formats change between
# commits, and each server must be given what its own clients would send.
CODE = Path(os.environ.get("SEALBOX_BENCH_CODE", ROOT))
sys.path.insert(0, str(CODE))

from crypto import (  # noqa: E402
    ChainKey,
    Envelope,
    KemPrivateKey,
    SigningKey,
    VerifyKey,
    seal_revision,
    seal_sender_key,
)
from sync.auth import sign_request  # noqa: E402
from sync.invite import Enrollment, Invite, seal_label  # noqa: E402
from sync.roster import Member, Role, Roster  # noqa: E402


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Signed:
    def __init__(self, base: str) -> None:
        self.base = base

    def request(
        self, method: str, path: str, body: object, key: SigningKey, *, cbor: bool = False
    ) -> tuple[bytes, dict[str, str]]:
        if cbor:
            data = cbor2.dumps(body)
        else:
            data = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(
            method=method,
            url=self.base + path,
            body=data,
            key=key,
            created=int(time.time()),
            nonce=secrets.token_urlsafe(16),
        )
        if data:
            headers["content-type"] = "application/cbor" if cbor else "application/json"
        return data, headers


@dataclass
class BenchOrg:
    org_id: bytes
    path: str
    coordinator: SigningKey
    roster: Roster
    devices: list[SigningKey]


def create_org(
    http: httpx2.Client,
    signer: Signed,
    server_key: VerifyKey,
    admin_token: str,
    n_devices: int,
    base: str,
) -> BenchOrg:
    """An organisation with one coordinator and ``n_devices`` enrolled, admitted devices."""
    coordinator, kem = SigningKey.generate(), KemPrivateKey.generate()
    org_id = secrets.token_bytes(16)
    members = [
        Member(
            coordinator.verify_key.key_id, coordinator.verify_key, Role.COORDINATOR, kem.public_key
        )
    ]
    devices = [SigningKey.generate() for _ in range(n_devices)]
    genesis = Roster(org_id, 1, bytes(32), server_key, tuple(members)).sign(coordinator)
    http.post(
        "/v1/orgs",
        json={"roster": b64(genesis.to_bytes())},
        headers={"authorization": f"Bearer {admin_token}"},
    ).raise_for_status()
    org_path = f"/v1/orgs/{b64(org_id)}"
    for dev in devices:
        doc, code = Invite.create(
            org_id=org_id,
            role=Role.FIELD,
            expires_at=int(time.time()) + 3600,
            roster_fingerprint=genesis.hash,
            server_url=base,
            signing_key=coordinator,
        )
        body, headers = signer.request(
            "POST", org_path + "/invites", {"invite": b64(doc.to_bytes())}, coordinator
        )
        http.post(org_path + "/invites", content=body, headers=headers).raise_for_status()
        label = seal_label(
            "bench", secret=code.secret, invite_id=code.invite_id, device_id=dev.verify_key.key_id
        )
        enr = Enrollment(org_id, code.invite_id, dev.verify_key, Role.FIELD, label).sign(dev)
        http.post(
            org_path + "/enroll",
            json={"enrollment": b64(enr.to_bytes()), "secret": b64(code.secret)},
        ).raise_for_status()
        members.append(Member(dev.verify_key.key_id, dev.verify_key, Role.FIELD))
    signed2 = (
        Roster(org_id, 1, bytes(32), server_key, tuple(members))
        .next_version(genesis)
        .sign(coordinator)
    )
    body, headers = signer.request(
        "POST", org_path + "/roster", {"roster": b64(signed2.to_bytes())}, coordinator
    )
    http.post(org_path + "/roster", content=body, headers=headers).raise_for_status()
    return BenchOrg(org_id, org_path, coordinator, signed2.roster, devices)


def seal_chain(
    org_id: bytes, roster: Roster, device: SigningKey, count: int, content: bytes
) -> list[Envelope]:
    """A field device's chain of ``count`` envelopes, as its pushes carry them: its sender
    key first, then revisions of ``content`` in reports of 10 revisions chained by parents."""
    chain = ChainKey.generate()
    key_env = seal_sender_key(
        org=org_id,
        seq=1,
        prev=bytes(32),
        roster_version=roster.version,
        chain_key=chain,
        recipients=roster.recipients(),
        signing_key=device,
    )
    envelopes, prev, parent, report = [key_env], key_env.id, None, secrets.token_bytes(16)
    for i in range(count - 1):
        if i % 10 == 0:
            report, parent = secrets.token_bytes(16), None
        message_key, chain = chain.advance()
        env = seal_revision(
            org=org_id,
            report=report,
            parents=[parent] if parent else [],
            seq=i + 2,
            prev=prev,
            roster_version=roster.version,
            key_seq=1,
            message_key=message_key,
            content=content,
            signing_key=device,
        )
        envelopes.append(env)
        prev = parent = env.id
    return envelopes


class Feed:
    """Pulls the whole changes feed as a coordinator, decoding every envelope."""

    def __init__(
        self,
        http: httpx2.Client,
        signer: Signed,
        key: SigningKey,
        org_path: str,
        page: int,
        feed_format: str,
    ) -> None:
        self.http, self.signer, self.key = http, signer, key
        self.org_path, self.page, self.feed_format = org_path, page, feed_format

    def _get(self, cursor: str) -> bytes:
        path = f"{self.org_path}/changes?cursor={cursor}&limit={self.page}"
        _, headers = self.signer.request("GET", path, None, self.key)
        if self.feed_format == "cbor":
            headers["accept"] = "application/cbor"
        response = self.http.get(path, headers=headers)
        response.raise_for_status()
        return response.content

    def _parse(self, body: bytes) -> dict[str, Any]:
        page: dict[str, Any] = cbor2.loads(body) if self.feed_format == "cbor" else json.loads(body)
        return page

    def _decode(self, page: dict[str, Any]) -> int:
        if self.feed_format == "cbor":
            return sum(len(item["envelope"]) for item in page["items"])
        return sum(len(unb64(item["envelope"])) for item in page["items"])

    def pull(self, *, pipelined: bool) -> tuple[float, int, int]:
        """(seconds, revisions, envelope bytes) for the whole feed."""
        pulled = envelope_bytes = 0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as fetcher:
            body = self._get("")
            while True:
                page = self._parse(body)
                ahead = None
                if page["more"] and pipelined:
                    ahead = fetcher.submit(self._get, page["cursor"])
                envelope_bytes += self._decode(page)
                pulled += len(page["items"])
                if not page["more"]:
                    break
                body = ahead.result() if ahead is not None else self._get(page["cursor"])
        return time.perf_counter() - t0, pulled, envelope_bytes


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process and its live children (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += sum(int(x) for x in fields[11:13]) / ticks
    return total


def database_cpu_seconds(database_url: str | None) -> float:
    """CPU time of the PostgreSQL backends serving the bench's database (their process
    title names it), so the database's share of a push is counted with the server's."""
    if not database_url:
        return 0.0
    name = database_url.rsplit("/", 1)[-1].split("?", 1)[0]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes()
            if not title.startswith(b"postgres: ") or f" {name} ".encode() not in title:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:13]) / ticks
    return total


def machine_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (all cores, all processes: the server, its
    database, the benchmark's own clients), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def start_server(
    args: argparse.Namespace,
    database_url: str | None,
    data_dir: str,
    port: int,
    server_tree: Path | None = None,
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # The server code under test: this checkout, or --server-tree / --against (PYTHONPATH
    # comes before the editable install on sys.path).
    env["PYTHONPATH"] = str(server_tree or ROOT)
    env["SEALBOX_DATA_DIR"] = data_dir
    env["SEALBOX_ADMIN_TOKEN"] = secrets.token_urlsafe(32)
    if database_url:
        env["SEALBOX_DATABASE_URL"] = database_url
    # The venv's console script, not ``python -c``: that would put the working directory
    # first on sys.path, ahead of PYTHONPATH.
    exe = str(Path(sys.executable).parent / "sealbox-server")
    subprocess.run([exe, "migrate"], env=env, check=True, capture_output=True)
    cmd = [exe, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.admin_token = env["SEALBOX_ADMIN_TOKEN"]  # type: ignore[attr-defined]
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx2.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--orgs",
        type=int,
        default=1,
        help="spread the clients over this many organisations (default 1: all contend for one)",
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=50, help="batches per client")
    parser.add_argument("--plaintext", type=int, default=2048)
    parser.add_argument("--page", type=int, default=2000, help="feed page size")
    parser.add_argument(
        "--workers", type=int, default=None, help="uvicorn workers (default: the server's, 2)"
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--feed-format", choices=["json", "cbor"], default="json")
    parser.add_argument(
        "--push-format",
        choices=["json", "cbor"],
        default="cbor",
        help="push body (default cbor: what the reference client sends)",
    )
    parser.add_argument(
        "--profile", default=None, help="py-spy binary: record a flame graph of the server"
    )
    parser.add_argument(
        "--compare",
        metavar="URL",
        default=None,
        help="also measure the database at URL; alternate the two --rounds times, print ratios",
    )
    parser.add_argument(
        "--server-tree",
        metavar="TREE",
        type=Path,
        default=None,
        help="run the server code of TREE (on PYTHONPATH) instead of this checkout's",
    )
    parser.add_argument(
        "--against",
        metavar="TREE",
        type=Path,
        default=None,
        help="also run the server code of TREE (a `git worktree` or `git archive` of another "
        "commit, on PYTHONPATH); alternate the two --rounds times, print medians and ratios",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --compare/--against")
    args = parser.parse_args()
    if args.against is not None:
        trees = {"this": (args.server_tree or ROOT).resolve(), "against": args.against.resolve()}
        code: dict[str, list[dict[str, object]]] = {"this": [], "against": []}
        for _ in range(args.rounds):
            # Alternate, so a change in the machine's load hits both trees alike.
            for name, tree in trees.items():
                code[name].append(measure_tree(tree, args))
        print(json.dumps(compare_code(code, str(args.against)), indent=2))
        return
    if args.compare is None:
        print(json.dumps(measure(args, args.database_url, args.server_tree), indent=2))
        return
    runs: dict[str, list[dict[str, object]]] = {"sqlite": [], "postgresql": []}
    for _ in range(args.rounds):
        # Alternate, so a change in the machine's load hits both backends alike.
        runs["sqlite"].append(measure(args, args.database_url, args.server_tree))
        runs["postgresql"].append(measure(args, args.compare, args.server_tree))
    print(json.dumps(compare(runs), indent=2))


def compare(runs: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    """Medians per backend and the PostgreSQL / SQLite ratios (> 1: PostgreSQL is faster)."""
    out: dict[str, object] = {"rounds": len(runs["sqlite"])}
    for metric in (
        "ingest_revisions_per_second",
        "feed_revisions_per_second",
        "feed_serial_revisions_per_second",
    ):
        values = {b: sorted(int(r[metric]) for r in rs) for b, rs in runs.items()}  # type: ignore[call-overload]
        medians = {b: v[len(v) // 2] for b, v in values.items()}
        paired = zip(
            (int(r[metric]) for r in runs["postgresql"]),  # type: ignore[call-overload]
            (int(r[metric]) for r in runs["sqlite"]),  # type: ignore[call-overload]
            strict=True,
        )
        ratios = sorted(p / s for p, s in paired)
        out[metric] = {
            "sqlite": values["sqlite"],
            "postgresql": values["postgresql"],
            "median_sqlite": medians["sqlite"],
            "median_postgresql": medians["postgresql"],
            "ratio_postgresql_to_sqlite_median": round(ratios[len(ratios) // 2], 3),
        }
    return out


def measure_tree(tree: Path, args: argparse.Namespace) -> dict[str, object]:
    """One run (`measure`) of ``tree``'s server, its clients using ``tree``'s code, in a
    process of its own."""
    cmd = [sys.executable, __file__, "--server-tree", str(tree)]
    for name in ("clients", "orgs", "batch", "batches", "plaintext", "page", "workers"):
        value = getattr(args, name)
        if value is not None:
            cmd += [f"--{name}", str(value)]
    cmd += ["--feed-format", args.feed_format, "--push-format", args.push_format]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    env = {**os.environ, "SEALBOX_BENCH_CODE": str(tree)}
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def compare_code(runs: dict[str, list[dict[str, object]]], against: str) -> dict[str, object]:
    """Medians for this tree and the other one, and the ratios this/other (> 1: faster),
    each the median of the rounds' ratios (a round runs both back to back)."""
    out: dict[str, object] = {"rounds": len(runs["this"]), "against": against}
    for metric in (
        "ingest_revisions_per_second",
        "ingest_server_cpu_us_per_revision",
        "ingest_machine_cpu_us_per_revision",
        "feed_revisions_per_second",
    ):
        values = {k: [float(r[metric]) for r in rs] for k, rs in runs.items()}  # type: ignore[arg-type]
        ratios = sorted(a / b for a, b in zip(values["this"], values["against"], strict=True))
        out[metric] = {
            "this": values["this"],
            "against": values["against"],
            "median_this": sorted(values["this"])[len(ratios) // 2],
            "median_against": sorted(values["against"])[len(ratios) // 2],
            "ratio_this_to_against_median": round(ratios[len(ratios) // 2], 3),
        }
    return out


def fresh_database(url: str) -> None:
    """(Re)create the PostgreSQL database named in ``url``, empty: every run starts from
    an empty database, as every SQLite run starts from an empty data directory."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


def measure(
    args: argparse.Namespace, database_url: str | None, server_tree: Path | None = None
) -> dict[str, object]:
    """One full run against a fresh server process: ingest, then the feed."""
    if database_url:
        fresh_database(database_url)
    data_dir = tempfile.mkdtemp(prefix="sealbox-bench-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if server_tree is not None:
        server_tree = server_tree.resolve()
    proc = start_server(args, database_url, data_dir, port, server_tree)
    try:
        http = httpx2.Client(base_url=base, timeout=120)
        signer = Signed(base)
        server_key = VerifyKey(unb64(http.get("/v1/server").json()["server_key"]))
        per_org = [
            args.clients // args.orgs + (k < args.clients % args.orgs) for k in range(args.orgs)
        ]
        orgs = [
            create_org(http, signer, server_key, proc.admin_token, n, base)  # type: ignore[attr-defined]
            for n in per_org
        ]
        placed = [(org, dev) for org in orgs for dev in org.devices]

        # Pre-generate envelopes and signed requests (not timed).
        t0 = time.perf_counter()
        content = os.urandom(args.plaintext)
        push_item = (lambda raw: raw) if args.push_format == "cbor" else b64
        requests: list[tuple[str, list[tuple[bytes, dict[str, str]]]]] = []
        for org, dev in placed:
            org_path = org.path
            envs = seal_chain(org.org_id, org.roster, dev, args.batch * args.batches, content)
            batches = []
            for start in range(0, len(envs), args.batch):
                chunk = envs[start : start + args.batch]
                batches.append(
                    signer.request(
                        "POST",
                        org_path + "/push",
                        {"envelopes": [push_item(e.to_bytes()) for e in chunk]},
                        dev,
                        cbor=args.push_format == "cbor",
                    )
                )
            requests.append((org_path, batches))
        prep = time.perf_counter() - t0
        total = len(requests) * args.batch * args.batches
        all_batches = [body for _, batches in requests for body, _ in batches]
        push_bytes = sum(map(len, all_batches))

        # Ingest.
        errors: list[str] = []

        def client(org_path: str, batches: list[tuple[bytes, dict[str, str]]]) -> None:
            with httpx2.Client(base_url=base, timeout=120) as c:
                for body, headers in batches:
                    resp = c.post(org_path + "/push", content=body, headers=headers)
                    if resp.status_code != 200:
                        errors.append(f"{resp.status_code} {resp.text[:200]}")
                        continue
                    bad = [x for x in resp.json()["results"] if x["status"] != "created"]
                    if bad:
                        errors.append(str(bad[0]))

        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    args.profile,
                    "record",
                    "--gil" if os.environ.get("BENCH_GIL") else "--nonblocking",
                    "-o",
                    "/tmp/sealbox-ingest.txt",
                    "-f",
                    "raw",
                    "-r",
                    "200",
                    "--subprocesses",
                    "-p",
                    str(proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        threads = [threading.Thread(target=client, args=r) for r in requests]
        cpu0, own0, machine0 = cpu_seconds(proc.pid), time.process_time(), machine_cpu_seconds()
        db0 = database_cpu_seconds(database_url)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ingest_s = time.perf_counter() - t0
        server_cpu = cpu_seconds(proc.pid) - cpu0
        machine_cpu = machine_cpu_seconds() - machine0
        db_cpu = database_cpu_seconds(database_url) - db0
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        client_cpu = time.process_time() - own0
        if errors:
            raise SystemExit(f"push errors: {errors[:3]}")

        # Feed: once page by page (request, decode, next request), once pipelined
        # (page N+1 is requested before page N is decoded, as a streaming client does;
        # this measures what the server delivers rather than one client thread's base64).
        def pull_all(pipelined: bool) -> tuple[float, int, int]:
            seconds = pulled = envelope_bytes = 0
            for org in orgs:
                feed = Feed(http, signer, org.coordinator, org.path, args.page, args.feed_format)
                s_, p_, b_ = feed.pull(pipelined=pipelined)
                seconds, pulled, envelope_bytes = seconds + s_, pulled + p_, envelope_bytes + b_
            return seconds, pulled, envelope_bytes

        serial_s, pulled, envelope_bytes = pull_all(pipelined=False)
        if pulled != total:
            raise SystemExit(f"feed returned {pulled} of {total} revisions")
        feed_s, pulled, _ = pull_all(pipelined=True)
        if pulled != total:
            raise SystemExit(f"pipelined feed returned {pulled} of {total} revisions")
        result = {
            "backend": "postgresql" if database_url else "sqlite",
            "server_tree": str(server_tree or ROOT),
            "workers": args.workers or "default (SEALBOX_WORKERS, 2)",
            "clients": args.clients,
            "organisations": args.orgs,
            "batch": args.batch,
            "plaintext_bytes": args.plaintext,
            "revisions": total,
            "envelope_bytes_avg": round(envelope_bytes / pulled),
            "prepare_seconds": round(prep, 2),
            "ingest_seconds": round(ingest_s, 3),
            "ingest_revisions_per_second": round(total / ingest_s),
            "ingest_server_cpu_seconds": round(server_cpu, 2),
            "ingest_database_cpu_seconds": round(db_cpu, 2),
            "ingest_client_cpu_seconds": round(client_cpu, 2),
            "ingest_machine_cpu_seconds": round(machine_cpu, 2),
            # Server (and PostgreSQL backend) CPU per revision: the cost the code controls.
            "ingest_server_cpu_us_per_revision": round(1e6 * (server_cpu + db_cpu) / total),
            # Everything the machine did meanwhile (clients, other work) per revision: near
            # 2 cores x ingest_seconds means ingest was CPU-bound.
            "ingest_machine_cpu_us_per_revision": round(1e6 * machine_cpu / total),
            "push_format": args.push_format,
            "push_request_bytes_avg": round(push_bytes / len(all_batches)),
            "feed_format": args.feed_format,
            "feed_seconds": round(feed_s, 3),
            "feed_revisions_per_second": round(pulled / feed_s),
            "feed_serial_revisions_per_second": round(pulled / serial_s),
            "budget_ingest": 4000,
            "budget_feed": 20000,
        }
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
