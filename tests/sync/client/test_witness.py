"""Checkpoints inside signed data (PROTOCOL §17.8): each revision carries the log its device
had verified; a coordinator checks every witness it pulls against the log it is shown."""

from __future__ import annotations

from crypto import parse_envelope
from crypto.envelope import NO_WITNESS
from sync.client import (
    LogPosition,
    SplitViewSeen,
    WitnessesChecked,
    log_flow,
    seal_edit,
)
from sync.client.log import witness_of
from sync.client.staleness import Stored
from sync.client.witness import MAX_CHECKS_PER_RUN, Witness, witness_flow, witnesses_in
from tests.sync.client.support import (
    ORG,
    PATH,
    REPORT,
    HonestLog,
    Org,
    content,
    fake_ids,
    of_type,
    play,
)


def _seal(org: Org, state, value: str) -> bytes:
    envelope = seal_edit(
        state, roster=org.roster, signing_key=org.field, report=REPORT, content=content(a=value)
    )
    return envelope.to_bytes()


def test_a_device_seals_the_newest_checkpoint_it_verified_into_each_revision() -> None:
    """PROTOCOL §17.8: before any sync the witness is size 0; once the device adopted a
    checkpoint, its revisions carry that checkpoint's size and root under its signature."""
    org = Org()
    state = org.device()
    first = parse_envelope(_seal(org, state, "0"))
    assert first.header.witness == NO_WITNESS and first.header.witnessed_log == (0, NO_WITNESS[8:])
    log = HonestLog(org.server, fake_ids(12))
    position = LogPosition(ORG, org.server.verify_key, device=state)
    play(log_flow(position, org_path=PATH), log.answer)
    assert position.checkpoint is not None
    later = parse_envelope(_seal(org, state, "1"))
    assert later.header.witness == witness_of(position.checkpoint)
    assert later.header.witnessed_log == (12, log.frontier.root())
    stored = [Stored(n, e.id, e.header) for n, e in enumerate((first, later), start=1)]
    assert [w.size for w in witnesses_in(stored)] == [12]


def _witness(size: int, root: bytes, n: int = 0) -> Witness:
    return Witness(size.to_bytes(8, "big") + root, b"D" * 16, bytes([n]) * 32)


def _coordinator(org: Org, log: HonestLog) -> LogPosition:
    return log.position(org.server.verify_key, held=log.size)


def test_a_witness_of_a_prefix_of_the_coordinators_log_is_consistent() -> None:
    """PROTOCOL §17.8: the server proves the witnessed log a prefix of the one shown here."""
    org = Org()
    log = HonestLog(org.server, fake_ids(30))
    seen = HonestLog(org.server, fake_ids(11))
    asked: list[dict[str, str]] = []

    def server(request):
        asked.append(dict(request.query))
        return log.answer(request)

    checked, events = play(
        witness_flow(
            _coordinator(org, log),
            [_witness(11, seen.frontier.root()), _witness(11, seen.frontier.root(), 1)],
            org_path=PATH,
            checked=frozenset(),
        ),
        server,
    )
    assert checked == 1 and asked == [{"since": "11"}]  # one request per distinct witness
    assert events == [WitnessesChecked((_witness(11, seen.frontier.root()).key,))]


def test_a_witness_of_another_history_is_a_split_view() -> None:
    """PROTOCOL §17.8: the device saw a log whose first 11 entries differ from this
    coordinator's: the server showed the two sides different histories."""
    org = Org()
    log = HonestLog(org.server, fake_ids(30))
    other = HonestLog(org.server, fake_ids(11, b"the device's view"))
    _, events = play(
        witness_flow(
            _coordinator(org, log),
            [_witness(11, other.frontier.root())],
            org_path=PATH,
            checked=frozenset(),
        ),
        log.answer,
    )
    (split,) = of_type(events, SplitViewSeen)
    assert (split.witnessed_size, split.witnessed_root) == (11, other.frontier.root())
    assert split.checkpoint == log.checkpoint() and "another history" in split.why


def test_a_witness_of_a_longer_log_than_the_coordinator_is_shown_is_a_split_view() -> None:
    """PROTOCOL §17.8: the device was shown 40 entries, this coordinator only 30: withheld."""
    org = Org()
    log = HonestLog(org.server, fake_ids(30))
    longer = HonestLog(org.server, fake_ids(40))
    calls: list[object] = []
    _, events = play(
        witness_flow(
            _coordinator(org, log),
            [_witness(40, longer.frontier.root())],
            org_path=PATH,
            checked=frozenset(),
        ),
        lambda r: calls.append(r),  # type: ignore[func-returns-value]
    )
    assert calls == []  # decided locally: nothing to ask
    (split,) = of_type(events, SplitViewSeen)
    assert split.witnessed_size == 40 and "longer log" in split.why


def test_witnesses_checked_before_are_not_asked_again_and_a_run_is_bounded() -> None:
    """PROTOCOL §17.8: each witness once; at most MAX_CHECKS_PER_RUN requests per sync."""
    org = Org()
    log = HonestLog(org.server, fake_ids(200))
    prefixes = [HonestLog(org.server, fake_ids(n)) for n in range(1, 101)]
    witnesses = [_witness(p.size, p.frontier.root()) for p in prefixes]
    asked: list[object] = []

    def server(request):
        asked.append(request)
        return log.answer(request)

    done = frozenset(w.key for w in witnesses[:10])
    checked, events = play(
        witness_flow(_coordinator(org, log), witnesses, org_path=PATH, checked=done), server
    )
    assert checked == len(asked) == MAX_CHECKS_PER_RUN and not of_type(events, SplitViewSeen)
    (record,) = of_type(events, WitnessesChecked)
    assert set(record.keys) == {w.key for w in witnesses[10 : 10 + MAX_CHECKS_PER_RUN]}
