"""A carried file with a large attachment (PROTOCOL §23): write, read and judge it, in bounded
memory.

Seals ``--mib`` MiB of random bytes as one attachment (1 MiB chunks), writes a carried file
of it with `sync.carry.carried_pieces` straight to disk, then, in a fresh process each time,
(a) reads it memory-mapped and judges the attachment as a coordinator does
(`sync.carry_attachments.judge_attachments`: every chunk opened, manifest and plaintext hash
checked), and (b) only reads the file once, for the baseline of what any reader pays. Prints
JSON: MiB/s of each, and each process's peak anonymous resident memory (sampled every 5 ms)
against the file's size, which shows whether the reader ever held the file whole. (Not the
whole resident set: the mapped file's pages count there, and Linux carries ``ru_maxrss``
across ``exec`` from the parent.)

    .venv/bin/python bench/bench_carried.py --mib 512
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crypto.stream import CHUNK_SIZE, manifest_of, new_attachment_key, seal_chunks  # noqa: E402
from sync.attachments import SealedTransfer  # noqa: E402
from sync.carry import carried_pieces  # noqa: E402
from sync.report import AttachmentManifest  # noqa: E402

_CHILD = """
import hashlib, json, mmap, sys, threading, time
sys.path.insert(0, {root!r})
peak = [0]
def anon():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))
def sample():
    while True:
        peak[0] = max(peak[0], anon())
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
from crypto.stream import Manifest
from sync.attachments import SealedTransfer
from sync.carry import read_carried
from sync.carry_attachments import judge_attachments
from sync.report import AttachmentManifest
spec = json.loads(sys.argv[1])
m = Manifest(*spec["manifest"][:3], bytes.fromhex(spec["manifest"][3]))
entry = AttachmentManifest(bytes.fromhex(spec["id"]), "a.bin", spec["size"],
    bytes.fromhex(spec["sha256"]), "application/octet-stream",
    SealedTransfer(bytes.fromhex(spec["key"]), m))
start = time.perf_counter()
with open(spec["path"], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
    if spec["mode"] == "judge":
        carried = read_carried(mm)
        (verdict,) = judge_attachments(carried, entry={{m.sha256: entry}}.get, held=lambda _: False)
        ok = carried.complete and verdict.usable
    else:
        h = hashlib.sha256()
        for i in range(0, len(mm), 1 << 20):
            h.update(mm[i : i + (1 << 20)])
        ok = True
seconds = time.perf_counter() - start
peak[0] = max(peak[0], anon())
print(json.dumps({{"ok": ok, "seconds": seconds, "peak_anon_bytes": peak[0]}}))
"""


def _child(spec: dict, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT)), json.dumps({**spec, "mode": mode})],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sealbox-carried-bench-") as tmp:
        data = os.urandom(args.mib * 1024 * 1024)
        key, attachment_id = new_attachment_key(), os.urandom(16)
        chunks = list(seal_chunks(key, attachment_id, [data], chunk_size=CHUNK_SIZE))
        manifest = manifest_of(chunks)
        entry = AttachmentManifest(
            attachment_id, "a.bin", len(data), hashlib.sha256(data).digest(), "x/y",
            SealedTransfer(key, manifest),
        )  # fmt: skip
        del data
        path = Path(tmp) / "big.carried"
        start = time.perf_counter()
        with path.open("wb") as out:
            for piece in carried_pieces([], [(manifest.sha256, iter(chunks))]):
                out.write(piece)
        write_seconds = time.perf_counter() - start
        del chunks
        spec = {
            "path": str(path),
            "id": attachment_id.hex(),
            "key": key.hex(),
            "size": entry.size,
            "sha256": entry.sha256.hex(),
            "manifest": [manifest.chunk_size, manifest.chunk_count, manifest.total_size,
                         manifest.sha256.hex()],
        }  # fmt: skip
        size = path.stat().st_size
        rounds = [(_child(spec, "judge"), _child(spec, "read")) for _ in range(args.rounds)]
        judged = sorted(r[0]["seconds"] for r in rounds)[len(rounds) // 2]
        read = sorted(r[1]["seconds"] for r in rounds)[len(rounds) // 2]
        assert all(r[0]["ok"] for r in rounds)
        print(json.dumps({
            "file_bytes": size,
            "write_mib_per_s": round(args.mib / write_seconds, 1),
            "judge_mib_per_s_median": round(args.mib / judged, 1),
            "read_only_mib_per_s_median": round(args.mib / read, 1),
            "judge_over_read_time": round(judged / read, 2),
            "judge_peak_anon_over_file": round(
                max(r[0]["peak_anon_bytes"] for r in rounds) / size, 3
            ),
            "read_peak_anon_over_file": round(
                max(r[1]["peak_anon_bytes"] for r in rounds) / size, 3
            ),
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
