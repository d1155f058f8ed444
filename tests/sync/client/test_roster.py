"""Roster updates at the start of every sync (PROTOCOL §15.4, §15.6)."""

from __future__ import annotations

from typing import Any

import pytest

from crypto import SigningKey
from sync.client import (
    Request,
    Response,
    RosterCheck,
    RosterReposted,
    RosterRolledBack,
    RosterVerified,
    ServerMisbehaved,
    SyncRefused,
    repair_roster_flow,
    roster_flow,
)
from sync.messages import b64decode, b64encode
from sync.roster import Member, Role, SignedRoster
from tests.sync.client.support import PATH, Org, play, problem


def _versions(versions: list[SignedRoster]) -> Response:
    return Response.of_json(200, {"versions": [b64encode(v.to_bytes()) for v in versions]})


def _serving(chain: list[SignedRoster], seen: list[Request] | None = None):
    """A server holding ``chain``: ``since=s`` answers every version above s."""

    def server(request: Request) -> Response:
        if seen is not None:
            seen.append(request)
        assert request.method == "GET" and request.path == f"{PATH}/roster"
        since = int(request.query["since"])
        return _versions([v for v in chain if v.roster.version > since])

    return server


def test_the_trusted_version_is_asked_for_again_and_an_extension_is_verified() -> None:
    # PROTOCOL §15.4 item 1: since = trusted − 1, verified with verify_chain from the trusted one.
    org = Org()
    org.extend(lambda r: r)
    trusted = org.chain[1]
    seen: list[Request] = []
    check, events = play(roster_flow(org_path=PATH, trusted=trusted), _serving(org.chain, seen))
    assert [r.query for r in seen] == [{"since": "1"}]
    assert check == RosterCheck(org.roster, None)
    assert events == [RosterVerified(org.roster, (org.chain[2],))]


def test_roster_flow_accepts_an_extension_and_refuses_a_substituted_key() -> None:
    # PROTOCOL §15.4 item 1: a substituted version stops the sync; nothing trusted changes.
    org = Org()
    trusted = org.chain[0]
    check, events = play(
        roster_flow(org_path=PATH, trusted=trusted), lambda r: _versions(org.chain)
    )
    assert check.roster.hash == org.roster.hash and check.rolled_back_to is None
    assert events == [RosterVerified(org.roster, tuple(org.chain[1:]))]
    mallory = SigningKey.generate()
    forged = org.roster.roster.with_member(
        Member(mallory.verify_key.key_id, mallory.verify_key, Role.FIELD)
    )
    forged_signed = forged.next_version(org.roster).sign(mallory)
    with pytest.raises(ServerMisbehaved, match="not acceptable"):
        play(
            roster_flow(org_path=PATH, trusted=org.roster),
            lambda r: _versions([org.roster, forged_signed]),
        )
    with pytest.raises(ServerMisbehaved, match="not acceptable"):
        play(roster_flow(org_path=PATH, trusted=org.roster), lambda r: _versions([forged_signed]))


def test_a_substituted_trusted_version_is_refused() -> None:
    # PROTOCOL §15.4 item 1: the trusted version must come back identical.
    org = Org()
    other = org.chain[0].roster.next_version(org.chain[0]).sign(org.coord)  # a v2 we never saw
    with pytest.raises(ServerMisbehaved):
        play(
            roster_flow(org_path=PATH, trusted=org.roster),
            lambda r: _versions([other]),
        )


def test_a_roster_rollback_is_reported_and_the_trusted_roster_kept() -> None:
    # PROTOCOL §15.4 item 2: never adopt the older roster; warn and continue with the trusted one.
    org = Org()
    org.extend(lambda r: r)  # v3
    seen: list[Request] = []
    check, events = play(
        roster_flow(org_path=PATH, trusted=org.roster), _serving(org.chain[:2], seen)
    )
    assert check == RosterCheck(org.roster, 2)
    assert events == [RosterRolledBack(served=2, trusted=3)]
    assert [r.query for r in seen] == [{"since": "2"}, {"since": "0"}]


def test_a_server_serving_no_roster_at_all_is_refused() -> None:
    # An organisation always has its genesis: an empty chain is no rollback but misbehaviour.
    org = Org()
    with pytest.raises(ServerMisbehaved, match="empty"):
        play(roster_flow(org_path=PATH, trusted=org.roster), lambda r: _versions([]))


def test_a_rolled_back_server_that_forks_the_verified_chain_is_refused() -> None:
    # PROTOCOL §15.4 item 2: what a restored server still serves must be the verified chain.
    org = Org()
    org.extend(lambda r: r)  # v3, whose prev is the hash of the v2 we verified
    fork = org.chain[0].roster.next_version(org.chain[0]).sign(org.coord)  # another v2
    assert fork.hash != org.chain[1].hash
    with pytest.raises(ServerMisbehaved, match="forks"):
        play(roster_flow(org_path=PATH, trusted=org.roster), _serving([org.chain[0], fork]))


def test_a_rolled_back_server_serving_a_broken_chain_is_refused() -> None:
    org = Org()
    org.extend(lambda r: r)
    mallory = SigningKey.generate()
    bogus = org.chain[0].roster.next_version(org.chain[0]).sign(mallory)
    with pytest.raises(ServerMisbehaved, match="not acceptable"):
        play(roster_flow(org_path=PATH, trusted=org.roster), _serving([org.chain[0], bogus]))


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"versions": ["AAAA"]}, id="not-a-roster"),
        pytest.param({"versions": "x"}, id="not-a-list"),
        pytest.param({"versions": ["not base64!"]}, id="not-base64"),
        pytest.param({}, id="no-versions"),
        pytest.param([], id="not-a-map"),
    ],
)
def test_a_roster_answer_of_the_wrong_shape_is_refused(answer: Any) -> None:
    org = Org()
    with pytest.raises(ServerMisbehaved):
        play(
            roster_flow(org_path=PATH, trusted=org.roster),
            lambda r: Response.of_json(200, answer),
        )


def test_a_roster_refusal_raises() -> None:
    org = Org()
    with pytest.raises(SyncRefused) as info:
        play(
            roster_flow(org_path=PATH, trusted=org.roster),
            lambda r: problem(403, "device_revoked"),
        )
    assert info.value.code == "device_revoked"


def test_a_restored_server_is_healed_by_reposting_the_verified_versions_it_lost() -> None:
    # PROTOCOL §15.4 item 2, §15.6: never adopt the older roster; a coordinator re-uploads.
    org = Org()
    org.extend(lambda r: r)  # v3, which the restored server lost
    org.extend(lambda r: r)  # v4, too
    check, _ = play(roster_flow(org_path=PATH, trusted=org.roster), _serving(org.chain[:2]))
    assert check.rolled_back_to == 2
    posted: list[SignedRoster] = []

    def accept(request: Request) -> Response:
        assert request.method == "POST" and request.path == f"{PATH}/roster"
        assert request.body is not None
        posted.append(SignedRoster.parse(b64decode(request.body["roster"])))
        return Response.of_json(201, {"version": posted[-1].roster.version})

    count, events = play(
        repair_roster_flow(org_path=PATH, chain=org.chain[::-1], served=check.rolled_back_to),
        accept,
    )
    assert count == 2 and [p.hash for p in posted] == [org.chain[2].hash, org.roster.hash]
    assert events == [RosterReposted(2)]


def test_nothing_to_repost_posts_nothing() -> None:
    org = Org()
    count, events = play(
        repair_roster_flow(org_path=PATH, chain=org.chain, served=2),
        lambda r: problem(500, "internal"),
    )
    assert count == 0 and events == []


def test_a_refused_repost_raises() -> None:
    org = Org()
    with pytest.raises(SyncRefused) as info:
        play(
            repair_roster_flow(org_path=PATH, chain=org.chain, served=1),
            lambda r: problem(409, "roster_conflict"),
        )
    assert info.value.code == "roster_conflict"
