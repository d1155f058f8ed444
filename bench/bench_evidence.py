"""Benchmark: the evidence bundle of a report with 3 revisions and a 5 MB photo, its size and
the time `sealbox evidence verify` takes (PROTOCOL §22, docs/EVIDENCE.md §8).

Everything runs for real on 127.0.0.1: a `sealbox-server serve` (SQLite, temporary data dir),
a coordinator and a field device created with the `sealbox` CLI.  The field device writes the
report with the photo (random bytes: incompressible, like a JPEG) and edits it once, the
coordinator edits it once; after the syncs the coordinator exports the report.

    .venv/bin/python bench/bench_evidence.py [--photo-bytes 5000000] [--rounds 5]

Prints one JSON object: the bundle's size and what it is made of, the wall time of the
`sealbox evidence verify` process (interpreter start included; it unlocks no key file) and the
time of the verification itself as the command reports it (`seconds`), median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto import encoding  # noqa: E402
from tests.cli.conftest import PASSPHRASE, Device, _live_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photo-bytes", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = _live_server(root)
        server = next(servers)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
            env |= {"SEALBOX_PASSPHRASE": PASSPHRASE, "SEALBOX_ADMIN_TOKEN": server.admin_token}
            coord, field = Device(root / "coord", dict(env)), Device(root / "field", dict(env))
            coord.run("org", "create", "--server", server.url, "--name", "Bench")
            code = coord.run("invite", "create", "--role", "field").json["code"]
            field.run("enroll", code, "--label", "phone")
            coord.run("sync")
            photo = root / "photo.jpg"
            photo.write_bytes(os.urandom(args.photo_bytes))
            report = field.run(
                "report", "new", "-f", "place=Market", "-f", "victims=2", "--attach", str(photo)
            ).json["report_id"]
            field.run("sync", timeout=600)
            field.run("report", "edit", report, "-f", "victims=3")
            field.run("sync")
            coord.run("sync", timeout=600)
            coord.run("report", "edit", report, "-f", "place=Central market")
            coord.run("sync")
            coord.run("sync")
            bundle = root / "evidence.sbx"
            started = time.perf_counter()
            exported = coord.run("evidence", "export", report, "-o", str(bundle), timeout=600)
            export_seconds = time.perf_counter() - started
        finally:
            next(servers, None)
        data = bundle.read_bytes()
        outer = encoding.decode(data)
        contents = encoding.decode(outer[3])
        parts = {k: len(encoding.encode(v)) for k, v in sorted(contents.items())}
        walls, seconds = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            result = coord.run("evidence", "verify", str(bundle))
            walls.append(time.perf_counter() - started)
            seconds.append(result.json["seconds"])
    print(
        json.dumps(
            {
                "photo_bytes": args.photo_bytes,
                "revisions": exported.json["revisions"],
                "bundle_bytes": len(data),
                "overhead_bytes": len(data) - args.photo_bytes,
                "manifest_bytes": len(outer[2]),
                "section_bytes": parts,
                "export_wall_seconds": round(export_seconds, 2),
                "verify_wall_seconds_median": round(statistics.median(walls), 3),
                "verify_seconds_median": round(statistics.median(seconds), 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
