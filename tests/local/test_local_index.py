"""The encrypted local index (clients/local/index.py, PROTOCOL §12.4), played as an adversary.

A coordinator profile is fed envelopes sealed by field devices, as a sync would keep them;
its index must equal one rebuilt from every envelope, refuse any blob it did not write for
this generation (and rebuild), keep no plaintext on disk, and open under no other key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clients.local.index import INDEX_FILE, Index, IndexRefused, ReportQuery, index_key
from clients.local.profile import Profile
from clients.local.store import Secrets, StoreError
from crypto import Envelope, SigningKey
from sync.client import CoordinatorView, DeviceState, seal_edit
from sync.report import ReportContent
from sync.roster import Member, Role, Roster, SignedRoster

ORG = b"O" * 16
PASS = b"correct horse battery staple"
MARKER = "Zq9-marker-Checkpoint-4"


class World:
    """A coordinator profile on disk and two field devices of its organisation."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.clock = 0
        self.secret = Secrets.generate(coordinator=True)
        coord = self.secret.signing_key
        assert self.secret.kem_key is not None
        self.fields = [SigningKey.generate(), SigningKey.generate()]
        members = [Member(coord.verify_key.key_id, coord.verify_key, Role.COORDINATOR,
                          self.secret.kem_key.public_key)]  # fmt: skip
        members += [Member(k.verify_key.key_id, k.verify_key, Role.FIELD) for k in self.fields]
        server = SigningKey.generate()
        self.roster: SignedRoster = Roster(
            ORG, 1, bytes(32), server.verify_key, tuple(members)
        ).sign(coord)
        self.states = [DeviceState(org_id=ORG, device_id=k.verify_key.key_id) for k in self.fields]
        meta = {"server": "http://127.0.0.1:9", "org": ORG, "role": "coordinator",
                "device": coord.verify_key.key_id, "org_name": "t", "label": "c"}  # fmt: skip
        Profile.create(home, self.secret, meta, self.roster, secret_passphrase=PASS).close()

    def edit(self, device: int, report: bytes, parents: Any = None, note: str = "", **f: str):
        state = self.states[device]
        self.clock += 1
        seal_edit(
            state, roster=self.roster, signing_key=self.fields[device], report=report,
            content=ReportContent(client_time=1_700_000_000 + self.clock, fields=f,
                                  notes=(note,) if note else ()),
            parents=parents,
        )  # fmt: skip
        return state.outbox[-1].envelope_id

    def take(self) -> list[bytes]:
        """Every envelope sealed since the last take (what the next pull brings)."""
        out = [i.data for s in self.states for i in s.outbox]
        for s in self.states:
            s.outbox.clear()
        return out

    def open(self) -> Profile:
        return Profile.open(self.home, secret_passphrase=PASS)

    def keep(self, envelopes: list[bytes]) -> None:
        profile = self.open()
        try:
            profile.keep_envelopes(envelopes)
        finally:
            profile.close()


def _everything(index: Index) -> dict[str, Any]:
    total, rows = index.query(ReportQuery(limit=10_000))
    return {
        "total": total,
        "rows": rows,
        "details": [index.detail(bytes.fromhex(r["report_id"])) for r in rows],
        "findings": index.findings(),
    }


def _rebuilt(world: World, envelopes: list[bytes]) -> Index:
    view = CoordinatorView(roster=world.roster, kem_key=world.secret.kem_key)  # type: ignore[arg-type]
    for data in envelopes:
        view.ingest(data)
    return Index.build(view)


def _three_syncs(world: World) -> list[bytes]:
    a, b = b"A" * 16, b"B" * 16
    first = world.edit(0, a, place="Checkpoint 4", detained="2")
    world.edit(1, b, place="Market", note="seen from the bus stop")
    kept = world.take()
    world.keep(kept)
    world.edit(0, a, (first,), detained="3")
    world.edit(1, a, (first,), detained="4")  # concurrent: a conflict
    second = world.take()
    world.keep(second)
    world.edit(1, b, note=MARKER, place=MARKER)
    third = world.take()
    world.keep(third)
    return kept + second + third


def test_the_index_after_incremental_syncs_equals_one_rebuilt_from_every_envelope(
    tmp_path: Path,
) -> None:
    world = World(tmp_path / "c")
    envelopes = _three_syncs(world)
    profile = world.open()
    try:
        got = _everything(profile.index())
    finally:
        profile.close()
    assert got == _everything(_rebuilt(world, envelopes))
    assert got["total"] == 2 and [r["conflict"] for r in got["rows"]] == [True, False]


def test_an_index_of_this_generation_is_opened_without_verifying_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path / "c")
    envelopes = _three_syncs(world)
    expected = _rebuilt(world, envelopes)
    expected_view = CoordinatorView(roster=world.roster, kem_key=world.secret.kem_key)  # type: ignore[arg-type]
    for data in envelopes:
        expected_view.ingest(data)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("verified again")

    monkeypatch.setattr(Envelope, "verify_signature", refuse)
    profile = world.open()
    try:
        assert _everything(profile.index()) == _everything(expected)
        view = profile.view()  # restored from the index's snapshot
        assert view.reports() == expected_view.reports()
        assert view.findings() == expected_view.findings()
    finally:
        profile.close()


def _flip(blob: bytes) -> bytes:
    return blob[:-40] + bytes([blob[-40] ^ 1]) + blob[-39:]


@pytest.mark.parametrize(
    "damage",
    [_flip, lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b[:20] + b[21:]],
    ids=["flipped", "truncated", "empty", "shifted"],
)
def test_a_damaged_index_is_refused_and_rebuilt(tmp_path: Path, damage: Any) -> None:
    world = World(tmp_path / "c")
    envelopes = _three_syncs(world)
    path = world.home / INDEX_FILE
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)
    key = index_key(world.secret.store_key)
    with pytest.raises(IndexRefused):
        Index.open(damaged, key, b"any")
    profile = world.open()
    try:
        assert _everything(profile.index()) == _everything(_rebuilt(world, envelopes))
    finally:
        profile.close()
    assert path.read_bytes() != damaged  # rewritten


def test_an_older_index_swapped_in_is_refused_and_rebuilt(tmp_path: Path) -> None:
    world = World(tmp_path / "c")
    world.edit(0, b"A" * 16, place="one")
    world.keep(world.take())
    old = (world.home / INDEX_FILE).read_bytes()
    world.edit(0, b"N" * 16, place="new")
    world.keep(world.take())
    (world.home / INDEX_FILE).write_bytes(old)  # a seizer rolls the index back
    profile = world.open()
    try:
        total, rows = profile.index().query(ReportQuery())
    finally:
        profile.close()
    assert total == 2 and {r["fields"]["place"] for r in rows} == {"one", "new"}


def test_an_index_of_another_profile_does_not_open(tmp_path: Path) -> None:
    one, two = World(tmp_path / "one"), World(tmp_path / "two")
    for world in (one, two):
        world.edit(0, b"A" * 16, place="x")
        world.keep(world.take())
    (two.home / INDEX_FILE).write_bytes((one.home / INDEX_FILE).read_bytes())
    blob = (two.home / INDEX_FILE).read_bytes()
    with pytest.raises(IndexRefused):
        Index.open(blob, index_key(two.secret.store_key), b"")
    profile = two.open()
    try:  # refused and rebuilt from two's own envelopes: two's device ids
        _, rows = profile.index().query(ReportQuery())
    finally:
        profile.close()
    assert rows[0]["devices"] == [two.fields[0].verify_key.key_id.hex()]


def test_a_wrong_key_fails_cleanly(tmp_path: Path) -> None:
    world = World(tmp_path / "c")
    _three_syncs(world)
    blob = (world.home / INDEX_FILE).read_bytes()
    with pytest.raises(IndexRefused, match="does not open"):
        Index.open(blob, index_key(bytes(32)), b"")
    with pytest.raises(StoreError, match="wrong passphrase"):
        Profile.open(world.home, secret_passphrase=b"not it")


def test_no_plaintext_of_a_report_touches_disk(tmp_path: Path) -> None:
    world = World(tmp_path / "c")
    _three_syncs(world)
    profile = world.open()
    try:  # the marker is in the index, in memory (so this test can fail)
        total, _ = profile.index().query(ReportQuery(text=MARKER))
        assert total == 1
    finally:
        profile.close()
    leaks = [
        str(p) for p in world.home.rglob("*") if p.is_file() and MARKER.encode() in p.read_bytes()
    ]
    assert leaks == []
    assert (world.home / INDEX_FILE).exists()
    assert not list(world.home.glob("*.tmp"))


def test_filters_search_and_paging(tmp_path: Path) -> None:
    world = World(tmp_path / "c")
    _three_syncs(world)
    profile = world.open()
    try:
        index = profile.index()
        one, two = (k.verify_key.key_id for k in world.fields)

        def ids(**q: Any) -> list[str]:
            return [r["report_id"][:2] for r in index.query(ReportQuery(**q))[1]]

        a, b = (b"A" * 16).hex()[:2], (b"B" * 16).hex()[:2]
        assert ids() == [a, b]
        assert ids(conflict=True) == [a] and ids(conflict=False) == [b]
        assert ids(device=one) == [a] and ids(device=two) == [a, b]
        assert ids(field="place", value="Market") == []  # overwritten by the marker edit
        assert ids(field="detained") == [a] and ids(field="detained", value="4") == [a]
        assert ids(text="bus stop") == [b] and ids(text='" OR 1') == []
        assert ids(verification="verified") == [a, b] and ids(verification="pending") == []
        assert ids(limit=1) == [a] and ids(offset=1, limit=1) == [b]
        assert ids(since=1_700_000_005) == [b] and ids(until=1_699_999_999) == []
        detail = index.detail(b"A" * 16)
        assert detail is not None and len(detail["history"]) == 3
        assert detail["fields"]["detained"]["conflict"] is True
        assert {w["author"] for w in detail["fields"]["detained"]["values"]} == {
            one.hex(),
            two.hex(),
        }
    finally:
        profile.close()


def test_a_profile_open_twice_never_writes_an_index_that_misses_the_other_s_envelopes(
    tmp_path: Path,
) -> None:
    world = World(tmp_path / "c")
    world.edit(0, b"A" * 16, place="first")
    world.keep(world.take())
    desk, cli = world.open(), world.open()  # e.g. the Desk open while `sealbox sync` runs
    try:
        world.edit(0, b"X" * 16, place="by the desk")
        desk.keep_envelopes(world.take())
        world.edit(1, b"Y" * 16, place="by the sync")
        cli.keep_envelopes(world.take())
        cli.close()
    finally:
        desk.close()  # last to close: its view does not hold the sync's envelope
    profile = world.open()
    try:
        _, rows = profile.index().query(ReportQuery())
    finally:
        profile.close()
    assert {r["fields"]["place"] for r in rows} == {"first", "by the desk", "by the sync"}


def test_a_revocation_updates_the_index_and_re_verifies_only_that_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path / "c")
    envelopes = _three_syncs(world)
    revoked = world.fields[0].verify_key.key_id
    world.roster = (
        world.roster.roster.revoke(revoked, after_seq=2)
        .next_version(world.roster)
        .sign(world.secret.signing_key)
    )
    checked: list[bytes] = []
    verify = Envelope.verify_signature

    def counting(self: Envelope, key: Any) -> None:
        checked.append(self.header.device)
        verify(self, key)

    monkeypatch.setattr(Envelope, "verify_signature", counting)
    profile = world.open()  # as `sealbox devices revoke` does: no view loaded before
    try:
        profile.set_roster(world.roster)
    finally:
        profile.close()
    assert checked and set(checked) == {revoked}  # the other device is not judged again
    checked.clear()
    profile = world.open()
    try:
        got = _everything(profile.index())
    finally:
        profile.close()
    assert checked == []  # the index written at close is of this generation
    assert got == _everything(_rebuilt(world, envelopes))
    states = {r["report_id"]: r["verification"] for r in got["rows"]}
    assert states == {(b"A" * 16).hex(): "after-revocation", (b"B" * 16).hex(): "verified"}
