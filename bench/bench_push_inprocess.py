"""The cost of one push, without HTTP and without concurrency: worker CPU and database CPU.

Creates an organisation with one field device through the API (in-process, Starlette's
TestClient), pre-generates its chain (one key envelope, then reports of 10 revisions
chained by parents, 2 KiB plaintext, as ``bench_server.py``), then calls the push
service directly, batch after batch, in one thread, and prints one JSON object:

* ``push_ms``: median wall time of a push of ``--batch`` envelopes;
* ``worker_cpu_ms``: median CPU time of the pushing thread (parse, verify, DAG rules,
  the driver's work; on SQLite also the database's own work, which runs in-process);
* ``database_cpu_ms``: PostgreSQL only, CPU of all ``postgres`` processes per push
  (from ``/proc``; run it on an otherwise idle database server).

Where a ``bench_server.py --compare`` run shows a gap between the backends, this
says whether it is the database's work, and ``--pg-options "-c log_min_duration_statement=0"``
makes PostgreSQL log each statement's duration for its connections.

    .venv/bin/python bench/bench_push_inprocess.py [--database-url URL] [--batches 40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import text
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_server import Signed, create_org, seal_chain  # noqa: E402

from crypto import VerifyKey  # noqa: E402
from server import migrate  # noqa: E402
from server.app import create_app  # noqa: E402
from server.auth import Caller  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.services import push as push_service  # noqa: E402
from server.settings import Settings  # noqa: E402
from sync.messages import b64decode  # noqa: E402


def postgres_cpu_seconds() -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main() -> None:
    # The server's structured log goes to stdout; this prints one JSON object there.
    with contextlib.redirect_stdout(sys.stderr):
        result = measure()
    print(json.dumps(result, indent=2))


def measure() -> dict[str, object]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL (default: SQLite)")
    parser.add_argument("--pg-options", default="", help="extra libpq options, e.g. -c x=y")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--plaintext", type=int, default=2048)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sealbox-push-bench-"))
    schema = None
    if args.database_url:
        schema = "bench_" + secrets.token_hex(6)
        admin = make_engine(args.database_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        options = f"-csearch_path={schema} {args.pg_options}".strip()
        engine = make_engine(args.database_url, connect_args={"options": options})
    else:
        engine = make_engine(f"sqlite:///{data_dir / 'sealbox.db'}")
    try:
        migrate.upgrade(engine)
        token = secrets.token_urlsafe(32)
        settings = Settings(data_dir=data_dir, admin_token=SecretStr(token), verify_threads=1)
        app = create_app(settings, engine=engine)
        with TestClient(app) as client:
            base = "http://testserver"
            server_key = VerifyKey(b64decode(client.get("/v1/server").json()["server_key"]))
            org = create_org(client, Signed(base), server_key, token, 1, base)
            device = org.devices[0]
            content = os.urandom(args.plaintext)
            chain = seal_chain(org.org_id, org.roster, device, args.batch * args.batches, content)
            envelopes = [env.to_bytes() for env in chain]
            ctx = app.state.ctx
            walls, cpus = [], []
            database0 = postgres_cpu_seconds() if schema else 0.0
            for start in range(0, len(envelopes), args.batch):
                caller = Caller(
                    org.org_id,
                    device.verify_key.key_id,
                    device.verify_key,
                    "field",
                    "admitted",
                    None,
                    nonce=secrets.token_urlsafe(16),
                    created=int(time.time()),
                )
                t0, c0 = time.perf_counter(), time.thread_time()
                outcome = push_service.push(
                    engine=engine,
                    settings=settings,
                    server_key=ctx.server_key,
                    pool=None,
                    caller=caller,
                    envelopes=envelopes[start : start + args.batch],
                    now=int(time.time()),
                )
                walls.append(time.perf_counter() - t0)
                cpus.append(time.thread_time() - c0)
                bad = [o for o in outcome.plan.outcomes if o.status.value != "created"]
                if bad:
                    raise SystemExit(f"push refused an item: {bad[0]}")
            database = postgres_cpu_seconds() - database0 if schema else None
        pushes = len(walls)
        return {
            "backend": "postgresql" if schema else "sqlite",
            "pushes": pushes,
            "batch": args.batch,
            "push_ms": round(statistics.median(walls) * 1e3, 2),
            "worker_cpu_ms": round(statistics.median(cpus) * 1e3, 2),
            "database_cpu_ms": round(database / pushes * 1e3, 2) if database is not None else None,
        }
    finally:
        engine.dispose()
        if schema:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
