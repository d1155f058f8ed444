"""The Desk's reports table over the encrypted index gives the view-based answer, fast.

A coordinator profile keeps a generated archive (several devices, notes, concurrent edits:
conflicts); `Reading.rows` (index) is compared with `Reading.scanned` (every report of the
view checked in Python) for each filter, the date filter included.
"""

from __future__ import annotations

import calendar
import datetime
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.desk.reading import Filters, Reading, Row
from clients.local.profile import Profile
from clients.local.store import Secrets
from crypto import SigningKey
from sync.client import DeviceState, seal_edit
from sync.report import ReportContent
from sync.roster import Member, Role, Roster, SignedRoster

ORG = b"R" * 16
PASS = b"reading test passphrase"
START = 1_700_000_000  # 2023-11-14 22:13:20 UTC
WORDS = ("checkpoint market school bus detained released injured seen heard border road "
         "court lawyer phone night morning convoy police soldier village").split()  # fmt: skip
REPORTS = 3000


def _archive(
    reports: int, rnd: random.Random
) -> tuple[SignedRoster, list[bytes], Secrets, list[bytes]]:
    secret = Secrets.generate(coordinator=True)
    coord = secret.signing_key
    assert secret.kem_key is not None
    keys = [SigningKey.generate() for _ in range(4)]
    members = [Member(coord.verify_key.key_id, coord.verify_key, Role.COORDINATOR,
                      secret.kem_key.public_key)]  # fmt: skip
    members += [Member(k.verify_key.key_id, k.verify_key, Role.FIELD) for k in keys]
    signed = Roster(ORG, 1, bytes(32), SigningKey.generate().verify_key, tuple(members)).sign(coord)
    states = [DeviceState(org_id=ORG, device_id=k.verify_key.key_id) for k in keys]
    clock = START
    for n in range(1, reports + 1):
        report = n.to_bytes(16, "big")
        author = rnd.randrange(len(keys))
        parents: tuple[bytes, ...] | None = None
        for _ in range(rnd.randint(1, 2)):
            clock += rnd.randint(1, 300)
            fields = {"place": f"{rnd.choice(WORDS)} {rnd.randint(1, 99)}",
                      "kind": rnd.choice(WORDS)}  # fmt: skip
            if n % 97 == 0:
                fields["witness"] = "Анна Zygmunt"  # a rare word, and Cyrillic
            content = ReportContent(client_time=clock, fields=fields,
                                    notes=(" ".join(rnd.choices(WORDS, k=6)),))  # fmt: skip
            envelope = seal_edit(states[author], roster=signed, signing_key=keys[author],
                                 report=report, content=content, parents=parents)  # fmt: skip
            if rnd.random() < 0.1:  # a concurrent edit by another device: a conflict
                other = (author + 1) % len(keys)
                rival = ReportContent(client_time=clock + 1, fields={"kind": "rival"})
                seal_edit(states[other], roster=signed, signing_key=keys[other],
                          report=report, content=rival, parents=(envelope.id,))  # fmt: skip
            parents = (envelope.id,)
    envelopes = [i.data for s in states for i in s.outbox]
    return signed, envelopes, secret, [k.verify_key.key_id for k in keys]


@pytest.fixture(scope="module")
def reading(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Reading, list[bytes]]]:
    rnd = random.Random(7)
    roster, envelopes, secret, devices = _archive(REPORTS, rnd)
    home: Path = tmp_path_factory.mktemp("reading") / "coordinator"
    device = secret.signing_key.verify_key.key_id
    meta = {"server": "http://127.0.0.1:9", "org": ORG, "role": "coordinator",
            "device": device, "org_name": "t", "label": "t"}  # fmt: skip
    Profile.create(home, secret, meta, roster, secret_passphrase=PASS).close()
    profile = Profile.open(home, secret_passphrase=PASS)
    rnd.shuffle(envelopes)
    for i in range(0, len(envelopes), 500):
        profile.keep_envelopes(envelopes[i : i + 500])
    profile.close()
    profile = Profile.open(home, secret_passphrase=PASS)
    try:
        yield Reading(profile), devices
    finally:
        profile.close()


def _ids(rows: list[Row]) -> list[str]:
    return [r.report_id for r in rows]


def _day(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).date().isoformat()


def test_index_answers_as_the_view(reading: tuple[Reading, list[bytes]]) -> None:
    r, devices = reading
    assert r.index is not None
    assert r.total() == len(r.view.reports()) == REPORTS
    assert r.devices_seen() == sorted(d.hex() for d in devices)
    middle = START + REPORTS * 150
    cases = [
        Filters(),
        Filters(q="convoy"),
        Filters(q="Convoy police"),
        Filters(q="анна"),
        Filters(q="zygmunt", conflict="yes"),
        Filters(q="nowhere-to-be-found"),
        Filters(q="-"),
        Filters(device=devices[0].hex()),
        Filters(device=devices[1].hex()[:6], conflict="no"),
        Filters(field="kind", value="rival"),
        Filters(field="place", value="checkpoint"),
        Filters(value="CONVOY"),
        Filters(conflict="yes"),
        Filters(findings="no", verification="verified"),
        Filters(findings="yes"),
        Filters(verification="unverified"),
        Filters(since=_day(middle)),
        Filters(until=_day(middle)),
        Filters(since=_day(middle), until=_day(middle), q="border"),
        Filters(since="not a date"),
    ]
    for f in cases:
        assert _ids(r.rows(f)) == _ids(r.scanned(f)), f
    conflicts = r.rows(Filters(conflict="yes"))
    assert conflicts and all(row.state.conflicts for row in conflicts)
    assert len({a for row in r.rows(Filters(q="convoy")) for a in row.state.authors}) > 1
    assert any(row.state.notes for row in r.rows(Filters(q="convoy")))
    one = r.rows()[5]
    got = r.report(one.report_id)
    assert got is not None and got.state == one.state and got.verification == one.verification


def test_date_filter(reading: tuple[Reading, list[bytes]]) -> None:
    r, _ = reading
    every = r.rows()
    days = sorted({_day(t) for row in every for t in _times(r, row.report_id)})
    assert len(days) >= 3
    day = days[1]
    start = calendar.timegm(datetime.date.fromisoformat(day).timetuple())
    on_day = r.rows(Filters(since=day, until=day))
    assert 0 < len(on_day) < len(every)
    for row in on_day:
        times = _times(r, row.report_id)
        assert min(times) < start + 86400 and max(times) >= start
    before = r.rows(Filters(until=days[0]))
    after = r.rows(Filters(since=days[-1]))
    assert before and after and not set(_ids(before)) & set(_ids(after))


def _times(r: Reading, report_id: str) -> list[int]:
    return [v.content.client_time for v in r.view.revisions(bytes.fromhex(report_id))]


def test_search_is_fast(reading: tuple[Reading, list[bytes]]) -> None:
    r, devices = reading
    r.rows(Filters(q="zygmunt"))  # warm: the index is opened once per unlock
    for f in (Filters(q="zygmunt"), Filters(q="анна", device=devices[2].hex()),
              Filters(q="zygmunt", field="kind", value="rival")):  # fmt: skip
        best = min(_timed(r, f) for _ in range(3))
        assert best < 0.1, (f, best)


def _timed(r: Reading, f: Filters) -> float:
    start = time.perf_counter()
    rows = r.rows(f)
    elapsed = time.perf_counter() - start
    assert rows or f.device or f.value
    return elapsed


PAGED = [
    Filters(),
    Filters(conflict="yes"),
    Filters(verification="verified"),
    Filters(q="convoy"),
    Filters(field="place", value="checkpoint"),
    Filters(findings="no", since="2023-11-15"),
]


@pytest.mark.parametrize(
    "f", PAGED, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.query().items()) or "all"
)
def test_pages_of_the_table_are_the_filtered_rows_in_order(
    reading: tuple[Reading, list[bytes]], f: Filters
) -> None:
    r, _ = reading
    every = _ids(r.scanned(f))
    assert every, f
    pages, offset = [], 0
    while True:
        matches, rows = r.page(f, offset, 100)
        assert matches == len(every)  # the count is of the matches, not of one page
        if not rows:
            break
        assert len(rows) <= 100
        pages.append(_ids(rows))
        offset += 100
    assert [i for p in pages for i in p] == every  # every match once, in order, none extra
    assert len(pages) == -(-len(every) // 100)


def test_a_page_of_many_reports_reads_only_that_page_and_is_fast(
    reading: tuple[Reading, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, _ = reading
    assert r.index is not None
    read: list[bytes] = []
    state = type(r.index).state

    def counting(self: object, report: bytes) -> object:
        read.append(report)
        return state(self, report)  # type: ignore[arg-type]

    monkeypatch.setattr(type(r.index), "state", counting)
    matches, rows = r.page(Filters(verification="verified"), 2900, 100)
    assert matches == REPORTS and len(rows) == 100
    assert len(read) == 100  # exact SQL filters: only the page's states are read
    start = time.perf_counter()
    r.page(Filters(conflict="no"), 1000, 100)
    assert time.perf_counter() - start < 0.1
