"""The encrypted local index (issue 13): first verification, open, filter and search.

Builds an archive of --revisions revisions (default 100,000) from --devices field devices
(default 20): reports of 1-5 revisions, about one in ten edited concurrently by a second
device (a conflict). A coordinator profile keeps them page by page as a sync would
(`Profile.keep_envelopes`: every envelope verified and decrypted once), writes its index
at close, then reopens it and queries it. Prints JSON with pass/fail against each budget:

  first verification of the archive  < 60 s
  open (index ready after the passphrase)  < 2 s
  filter and full-text search  < 100 ms each

and what a roster change costs (a device revoked: set the roster, close, index written).

    .venv/bin/python bench/bench_index.py [--revisions 100000] [--profile | --profile-roster]
        [--check]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clients.local.index import INDEX_FILE, Index, ReportQuery  # noqa: E402
from clients.local.profile import Profile  # noqa: E402
from clients.local.store import Secrets  # noqa: E402
from crypto import SigningKey, parse_envelope  # noqa: E402
from sync.client import CoordinatorView, DeviceState, chain_order, seal_edit  # noqa: E402
from sync.report import ReportContent  # noqa: E402
from sync.roster import Member, Role, Roster  # noqa: E402

BUDGETS = {"first_verification_s": 60.0, "open_s": 2.0, "query_ms": 100.0}
ORG = b"O" * 16
PASS = b"bench passphrase"
WORDS = ("checkpoint market school bus detained released injured seen heard border road "
         "court lawyer phone night morning convoy police soldier village").split()  # fmt: skip


def archive(revisions: int, devices: int, rnd: random.Random) -> tuple[Any, list[bytes], Secrets]:
    secret = Secrets.generate(coordinator=True)
    coord = secret.signing_key
    assert secret.kem_key is not None
    keys = [SigningKey.generate() for _ in range(devices)]
    members = [Member(coord.verify_key.key_id, coord.verify_key, Role.COORDINATOR,
                      secret.kem_key.public_key)]  # fmt: skip
    members += [Member(k.verify_key.key_id, k.verify_key, Role.FIELD) for k in keys]
    roster = Roster(ORG, 1, bytes(32), SigningKey.generate().verify_key, tuple(members))
    signed = roster.sign(coord)
    states = [DeviceState(org_id=ORG, device_id=k.verify_key.key_id) for k in keys]
    made, report_no, clock = 0, 0, 1_700_000_000
    while made < revisions:
        report_no += 1
        report = report_no.to_bytes(16, "big")
        author = rnd.randrange(devices)
        parents: tuple[bytes, ...] | None = None
        for _ in range(min(rnd.randint(1, 5), revisions - made)):
            clock += rnd.randint(1, 600)
            fields = {"place": f"{rnd.choice(WORDS)} {rnd.randint(1, 99)}",
                      "count": str(rnd.randint(0, 30)), "kind": rnd.choice(WORDS)}  # fmt: skip
            note = " ".join(rnd.choices(WORDS, k=8))
            content = ReportContent(client_time=clock, fields=fields, notes=(note,))
            envelope = seal_edit(states[author], roster=signed, signing_key=keys[author],
                                 report=report, content=content, parents=parents)  # fmt: skip
            made += 1
            if made < revisions and rnd.random() < 0.1:  # a concurrent edit: a conflict
                other = (author + 1) % devices
                rival = ReportContent(client_time=clock + 1, fields={"count": "rival"})
                seal_edit(states[other], roster=signed, signing_key=keys[other],
                          report=report, content=rival, parents=(envelope.id,))  # fmt: skip
                made += 1
            parents = (envelope.id,)
    envelopes = [i.data for s in states for i in s.outbox]
    return signed, envelopes, secret


def timed(fn: Any, runs: int = 5) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--revisions", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--page", type=int, default=1000, help="envelopes per pulled page")
    parser.add_argument("--profile", action="store_true", help="cProfile the first verification")
    parser.add_argument("--profile-roster", action="store_true", help="cProfile the roster change")
    parser.add_argument(
        "--check", action="store_true", help="compare the roster-changed index with a rebuild"
    )
    args = parser.parse_args()
    rnd = random.Random(13)
    out: dict[str, Any] = {"revisions": args.revisions, "devices": args.devices}
    start = time.perf_counter()
    roster, envelopes, secret = archive(args.revisions, args.devices, rnd)
    out["envelopes"] = len(envelopes)
    out["seal_s"] = round(time.perf_counter() - start, 2)
    rnd.shuffle(envelopes)  # a feed interleaves devices
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "coordinator"
        device_id = secret.signing_key.verify_key.key_id
        meta = {"server": "http://127.0.0.1:9", "org": ORG, "role": "coordinator",
                "device": device_id, "org_name": "b", "label": "b"}  # fmt: skip
        Profile.create(home, secret, meta, roster, secret_passphrase=PASS).close()
        profile = Profile.open(home, secret_passphrase=PASS)
        profiler = cProfile.Profile() if args.profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(0, len(envelopes), args.page):
            profile.keep_envelopes(envelopes[i : i + args.page])
        profile.close()  # the index is written here
        if profiler:
            profiler.disable()
        out["first_verification_s"] = round(time.perf_counter() - start, 2)
        out["index_bytes"] = (home / INDEX_FILE).stat().st_size

        start = time.perf_counter()
        profile = Profile.open(home, secret_passphrase=PASS)
        out["passphrase_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        index = profile.index()
        out["open_s"] = round(time.perf_counter() - start, 3)
        total = index.query(ReportQuery(limit=1))[0]
        out["reports"] = total
        device = roster.roster.members[1].device_id
        queries = {
            "conflicts": ReportQuery(conflict=True),
            "device": ReportQuery(device=device),
            "field_value": ReportQuery(field="kind", value="convoy"),
            "date_range": ReportQuery(since=1_700_000_000 + 86400, until=1_700_000_000 + 172800),
            "verified_no_findings": ReportQuery(verification="verified", findings=False),
            "search": ReportQuery(text="convoy police"),
            "search_page_50": ReportQuery(text="border", offset=50, limit=50),
        }
        out["query_ms"] = {}
        for name, q in queries.items():
            seconds, (count, _) = timed(lambda q=q: index.query(q))
            out["query_ms"][name] = {"ms": round(seconds * 1000, 1), "matches": count}
        seconds, _ = timed(lambda: index.detail((1).to_bytes(16, "big")))
        out["query_ms"]["detail"] = {"ms": round(seconds * 1000, 1), "matches": 1}
        start = time.perf_counter()
        profile.view()  # what a sync starts from: the restored view
        out["restore_view_s"] = round(time.perf_counter() - start, 2)
        profile.close()

        # A roster change, as `sealbox devices revoke` (or the Desk's revoke) makes it: a
        # fresh process sets the new roster and closes, writing the index (device 1 revoked
        # halfway through its chain). Then the index of the new generation opens as before.
        revoked = roster.roster.members[1].device_id
        watermark = max(parse_envelope(e).header.seq for e in envelopes
                        if parse_envelope(e).header.device == revoked)  # fmt: skip
        newer = roster.roster.revoke(revoked, after_seq=watermark // 2)
        signed = newer.next_version(roster).sign(secret.signing_key)
        roster_profiler = cProfile.Profile() if args.profile_roster else None
        start = time.perf_counter()
        if roster_profiler:
            roster_profiler.enable()
        profile = Profile.open(home, secret_passphrase=PASS)
        profile.set_roster(signed)
        profile.close()
        if roster_profiler:
            roster_profiler.disable()
            profiler = roster_profiler
        out["roster_change_s"] = round(time.perf_counter() - start, 2)
        profile = Profile.open(home, secret_passphrase=PASS)
        start = time.perf_counter()
        index = profile.index()
        out["open_after_roster_change_s"] = round(time.perf_counter() - start, 3)
        after = index.query(ReportQuery(verification="after-revocation", limit=1))[0]
        out["reports_after_revocation"] = after
        if args.check:  # the incremental index equals one rebuilt under the new roster
            view = CoordinatorView(roster=signed, kem_key=secret.kem_key, history=[roster])
            for data in sorted(envelopes, key=chain_order):
                view.ingest(data)
            rebuilt = Index.build(view)
            for q in (ReportQuery(limit=-1), ReportQuery(verification="after-revocation")):
                assert index.query(q) == rebuilt.query(q), "the updated index differs"
            assert index.findings() == rebuilt.findings()
            out["check"] = "the updated index equals the rebuilt one"
        profile.close()
    worst = max(v["ms"] for v in out["query_ms"].values())
    out["pass"] = {
        "first_verification": out["first_verification_s"] < BUDGETS["first_verification_s"],
        "open": out["open_s"] < BUDGETS["open_s"],
        "queries": worst < BUDGETS["query_ms"],
        "open_after_roster_change": out["open_after_roster_change_s"] < BUDGETS["open_s"],
    }
    out["budgets"] = BUDGETS
    print(json.dumps(out, indent=2))
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue(), file=sys.stderr)


if __name__ == "__main__":
    main()
