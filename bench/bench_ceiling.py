"""The ingest ceiling of this host: the push service with no HTTP at all, one process a client.

What the server could reach if the request around the push service (HTTP parsing, the
RFC 9421 check, rate counters, FastAPI, the answer) cost nothing: ``--clients`` processes,
as many as the server's workers, each the only pusher of its own device, call
`server.services.push.push` directly on one database (the same SQLite file, or
PostgreSQL with ``--database-url``), with the server's verify pool, back to back from a
common start.  Every check and durability promise of a real push holds: the envelopes are
parsed and their signatures verified, the DAG rules, the log, the receipt and the fsync of
each commit.  The batches are what ``bench_server.py`` pushes (4 devices, 100 revisions of
2 KiB each, chained).

An upper bound for ``bench_server.py``'s ingest on the same machine: with ``--against
TREE`` it alternates with that tree's ingest measured from outside (``bench_server.py
--server-tree TREE``), ``--rounds`` times, and prints the medians and the ratio ceiling /
TREE.  If that ratio is below a speed target against TREE, no change to the request path
reaches the target without less work per revision in the service itself.

    .venv/bin/python bench/bench_ceiling.py [--clients 4] [--batches 30] [--database-url URL]
    .venv/bin/python bench/bench_ceiling.py --batches 30 --against /tmp/sealbox-86d1ff4 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_server  # noqa: E402
from bench_server import Signed, create_org, fresh_database, seal_chain  # noqa: E402


def _settings(data_dir: Path, database_url: str | None) -> Settings:
    # Imported late, as in every function here: a pushing process loads only what it uses.
    from pydantic import SecretStr

    from server.settings import Settings

    return Settings(
        data_dir=data_dir, database_url=database_url, admin_token=SecretStr("bench-" + "x" * 32)
    )


def prepare(args: argparse.Namespace, data_dir: Path) -> list[Path]:
    """Migrate, create the organisation and its devices through the API (in-process), seal
    every device's chain; one file of batches per device, for its pushing process."""
    from starlette.testclient import TestClient

    from crypto import VerifyKey
    from server import migrate
    from server.app import create_app
    from server.db import engine_for
    from sync.messages import b64decode

    settings = _settings(data_dir, args.database_url)
    engine = engine_for(settings)
    migrate.upgrade(engine)
    app = create_app(settings, engine=engine)
    files = []
    with TestClient(app) as client:
        base = "http://testserver"
        server_key = VerifyKey(b64decode(client.get("/v1/server").json()["server_key"]))
        assert settings.admin_token is not None
        token = settings.admin_token.get_secret_value()
        org = create_org(client, Signed(base), server_key, token, args.clients, base)
        content = os.urandom(args.plaintext)
        for n, device in enumerate(org.devices):
            chain = seal_chain(org.org_id, org.roster, device, args.batch * args.batches, content)
            envelopes = [env.to_bytes() for env in chain]
            batches = [envelopes[s : s + args.batch] for s in range(0, len(envelopes), args.batch)]
            path = data_dir / f"device-{n}.pickle"
            path.write_bytes(
                pickle.dumps(
                    {"org": org.org_id, "device": device.verify_key.raw, "batches": batches}
                )
            )
            files.append(path)
    engine.dispose()
    return files


def pusher(batches_file: Path, data_dir: Path, database_url: str | None) -> None:
    """One pushing process: set up like a server worker, wait for "go" on stdin, push
    every batch, print its start, end and CPU as JSON."""
    from concurrent.futures import ThreadPoolExecutor

    from crypto import VerifyKey
    from server.auth import Caller
    from server.db import engine_for
    from server.services import push as push_service
    from server.settings import load_or_create_server_key

    job = pickle.loads(batches_file.read_bytes())
    settings = _settings(data_dir, database_url)
    engine = engine_for(settings)
    server_key = load_or_create_server_key(settings.resolved_server_key_file)
    pool = ThreadPoolExecutor(settings.verify_threads, thread_name_prefix="verify")
    key = VerifyKey(job["device"])
    print("ready", flush=True)
    sys.stdin.readline()
    t0, c0 = time.time(), time.process_time()
    for batch in job["batches"]:
        caller = Caller(
            job["org"],
            key.key_id,
            key,
            "field",
            "admitted",
            None,
            nonce=secrets.token_urlsafe(16),
            created=int(time.time()),
        )
        outcome = push_service.push(
            engine=engine,
            settings=settings,
            server_key=server_key,
            pool=pool,
            caller=caller,
            envelopes=batch,
            now=int(time.time()),
        )
        if any(o.status.value != "created" for o in outcome.plan.outcomes):
            raise SystemExit("push refused an item")
    t1, c1 = time.time(), time.process_time()
    pool.shutdown()
    engine.dispose()
    revisions = sum(map(len, job["batches"]))
    print(json.dumps({"start": t0, "end": t1, "cpu": c1 - c0, "revisions": revisions}))


def measure(args: argparse.Namespace) -> dict[str, object]:
    if args.database_url:
        fresh_database(args.database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="sealbox-ceiling-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the server's log goes to stdout
            files = prepare(args, data_dir)
        cmd = [sys.executable, __file__, "--data-dir", str(data_dir)]
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        for path in files:
            procs.append(
                subprocess.Popen(
                    [*cmd, "--pusher", str(path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        done = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"a pushing process failed ({p.returncode})")
            done.append(json.loads(out.strip().splitlines()[-1]))
        seconds = max(d["end"] for d in done) - min(d["start"] for d in done)
        revisions = sum(d["revisions"] for d in done)
        return {
            "backend": "postgresql" if args.database_url else "sqlite",
            "processes": len(done),
            "revisions": revisions,
            "ingest_seconds": round(seconds, 3),
            "ingest_revisions_per_second": round(revisions / seconds),
            "pusher_cpu_us_per_revision": round(1e6 * sum(d["cpu"] for d in done) / revisions),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="pushing processes")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=30, help="batches per process")
    parser.add_argument("--plaintext", type=int, default=2048)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--against", type=Path, default=None, metavar="TREE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pusher", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pusher is not None:
        pusher(args.pusher, args.data_dir, args.database_url)
        return
    if args.against is None:
        print(json.dumps(measure(args), indent=2))
        return
    # bench_server.py's own options for the tree measured from outside.
    outside = argparse.Namespace(
        clients=args.clients,
        orgs=1,
        batch=args.batch,
        batches=args.batches,
        plaintext=args.plaintext,
        page=2000,
        workers=None,
        feed_format="json",
        push_format="cbor",
        database_url=args.database_url,
    )
    ceiling, against = [], []
    for _ in range(args.rounds):
        against.append(
            bench_server.measure_tree(args.against.resolve(), outside)[
                "ingest_revisions_per_second"
            ]
        )
        ceiling.append(measure(args)["ingest_revisions_per_second"])
    ratios = sorted(c / a for c, a in zip(ceiling, against, strict=True))
    print(
        json.dumps(
            {
                "backend": "postgresql" if args.database_url else "sqlite",
                "rounds": args.rounds,
                "against": str(args.against),
                "ceiling_revisions_per_second": ceiling,
                "against_revisions_per_second": against,
                "median_ceiling": statistics.median(ceiling),
                "median_against": statistics.median(against),
                "ratio_ceiling_to_against_median": round(ratios[len(ratios) // 2], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
