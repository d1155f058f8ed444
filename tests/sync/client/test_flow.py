"""The I/O seam: bounded decoding of answers, typed refusals, one driver (PROTOCOL §15)."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import cbor2
import pytest
from pydantic import BaseModel

from sync.client import (
    Event,
    Request,
    Response,
    ServerMisbehaved,
    SyncRefused,
    decode,
    drive,
    expect,
)
from sync.messages import CBOR_MEDIA_TYPE, ChangesPage, FeedLog, RosterVersions
from tests.sync.client.support import problem


class Anything(BaseModel):
    value: Any


def _cbor(raw: bytes) -> Response:
    return Response(200, raw, CBOR_MEDIA_TYPE)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# -- decode: bounded, validated, one failure type


def test_an_honest_answer_decodes_into_its_wire_model() -> None:
    log = {"checkpoint": b"signed", "prefix": [], "consistency": [bytes(32)]}
    page = decode(
        Response.of_cbor(200, {"items": [], "cursor": "", "more": False, "log": log}),
        ChangesPage,
        what="feed",
    )
    assert page == ChangesPage(items=[], cursor="", more=False, log=FeedLog(**log))
    versions = decode(Response.of_json(200, {"versions": ["AAEC"]}), RosterVersions, what="r")
    assert versions.versions == [b"\x00\x01\x02"]


def test_undecodable_cbor_is_misbehaviour() -> None:
    with pytest.raises(ServerMisbehaved, match="feed: the answer does not decode"):
        decode(_cbor(b"\xff\x00\x1c"), ChangesPage, what="feed")


def test_half_a_cbor_answer_is_misbehaviour() -> None:
    whole = cbor2.dumps({"items": [], "cursor": "", "more": False})
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(_cbor(whole[:-3]), ChangesPage, what="feed")


def test_five_hundred_thousand_nested_cbor_arrays_are_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(_cbor(b"\x81" * 500_000 + b"\x00"), Anything, what="x")


@pytest.mark.parametrize(
    "major",
    [
        pytest.param(0x5B, id="byte-string"),
        pytest.param(0x7B, id="text-string"),
        pytest.param(0x9B, id="array"),
        pytest.param(0xBB, id="map"),
    ],
)
def test_a_cbor_length_prefix_of_two_to_the_63_is_refused_without_allocating(major: int) -> None:
    raw = bytes([major]) + (2**63).to_bytes(8, "big") + b"\x00" * 16
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(_cbor(raw), Anything, what="x")


def test_indefinite_length_cbor_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(_cbor(b"\xbf\x65value\x00\xff"), Anything, what="x")
    assert decode(_cbor(b"\xa1\x65value\x00"), Anything, what="x").value == 0


def test_bytes_after_the_cbor_answer_are_misbehaviour() -> None:
    whole = cbor2.dumps({"items": [], "cursor": "", "more": False})
    with pytest.raises(ServerMisbehaved):
        decode(_cbor(whole + b"\xff\xff"), ChangesPage, what="feed")


def test_cbor_nesting_is_capped() -> None:
    assert decode(Response.of_cbor(200, {"value": _nested(6)}), Anything, what="x")
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(Response.of_cbor(200, {"value": _nested(12)}), Anything, what="x")


def test_json_nested_ten_thousand_deep_is_refused() -> None:
    raw = b'{"value":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(Response(200, raw, "application/json"), Anything, what="x")


def test_json_nesting_is_capped_below_what_the_model_would_accept() -> None:
    # Anything accepts any value: only the nesting cap refuses the deeper one.
    assert decode(Response.of_json(200, {"value": _nested(6)}), Anything, what="x")
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(Response.of_json(200, {"value": _nested(8)}), Anything, what="x")
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(Response.of_json(200, {"value": _nested(3)}), Anything, what="x", max_depth=3)


def test_an_oversized_answer_is_refused_before_it_is_read() -> None:
    honest = json.dumps({"versions": []}).encode()
    with pytest.raises(ServerMisbehaved, match="roster: the answer is larger"):
        decode(
            Response(200, honest, "application/json", oversized=True), RosterVersions, what="roster"
        )


def test_an_answer_of_an_unexpected_media_type_is_refused() -> None:
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(Response(200, b'{"versions": []}', "text/html"), RosterVersions, what="roster")


def test_an_answer_of_the_wrong_shape_names_what_was_asked() -> None:
    with pytest.raises(ServerMisbehaved, match="roster: the answer has the wrong shape"):
        decode(Response.of_json(200, {"versions": [1]}), RosterVersions, what="roster")


def test_invalid_utf8_json_is_misbehaviour() -> None:
    with pytest.raises(ServerMisbehaved, match="does not decode"):
        decode(
            Response(200, b'{"versions": ["\xff"]}', "application/json"), RosterVersions, what="r"
        )


# -- Response, expect, SyncRefused


def test_problems_are_sent_as_problem_json_and_read_back_bounded() -> None:
    refusal = problem(403, "device_revoked", "revoked")
    assert refusal.media_type == "application/problem+json"
    assert Response.of_json(200, {}).media_type == "application/json"
    assert Response.of_cbor(200, {}).media_type == CBOR_MEDIA_TYPE
    assert refusal.code == "device_revoked"
    assert refusal.problem()["detail"] == "revoked"
    long = Response.of_json(400, {"code": "x", "detail": "d" * 10_000})
    assert len(long.problem()["detail"]) == 500
    assert Response(500, b"x" * 70_000, "application/problem+json").problem() == {}
    assert Response(500, b"[" * 10_000, "application/problem+json").problem() == {}
    assert Response(500, b"[1]", "application/problem+json").problem() == {}


def test_expect_passes_what_is_expected_and_turns_the_rest_into_a_refusal() -> None:
    ok = Response.of_json(201, {})
    assert expect(ok, 200, 201) is ok
    with pytest.raises(SyncRefused) as info:
        expect(problem(429, "rate_limited", "slow down"), 200)
    assert (info.value.status, info.value.code, info.value.detail) == (
        429,
        "rate_limited",
        "slow down",
    )
    with pytest.raises(SyncRefused) as bare:
        expect(Response(502, b"<html>", "text/html"), 200)
    assert bare.value.code is None and bare.value.detail == "no detail"
    with pytest.raises(TypeError):
        expect(None, 200)
    with pytest.raises(TypeError):
        expect((ok,), 200)


def test_a_request_encodes_its_body_once() -> None:
    assert Request("GET", "/x").encoded() == (b"", None)
    assert Request("POST", "/x", {"a": 1}).encoded() == (b'{"a":1}', "application/json")
    raw = Request("POST", "/x", content=b"\xa0", content_type=CBOR_MEDIA_TYPE)
    assert raw.encoded() == (b"\xa0", CBOR_MEDIA_TYPE)


# -- drive: one driver, the flow closed in finally


class Said(Event):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _flow(log: list[str]) -> Generator[Any, Any, str]:
    try:
        first = yield Request("GET", "/one")
        yield Said(f"got {first.status}")
        pair = yield (Request("GET", "/a"), Request("GET", "/b"))
        log.append(",".join(str(r.status) for r in pair))
        return "done"
    finally:
        log.append("closed")


def test_drive_sends_requests_renders_events_and_returns_the_result() -> None:
    log: list[str] = []
    events: list[Event] = []
    paths: list[str] = []

    def send(request: Request) -> Response:
        paths.append(request.path)
        return Response(200 + len(paths))

    assert drive(_flow(log), send, events.append) == "done"
    assert paths == ["/one", "/a", "/b"]  # a Concurrent step, sent in order by default
    assert [e.text for e in events] == ["got 201"]  # type: ignore[attr-defined]
    assert log == ["202,203", "closed"]


def test_drive_hands_concurrent_steps_to_send_many() -> None:
    log: list[str] = []
    batches: list[tuple[str, ...]] = []

    def many(requests: tuple[Request, ...]) -> tuple[Response, ...]:
        batches.append(tuple(r.path for r in requests))
        return (Response(204), Response(205))

    assert drive(_flow(log), lambda r: Response(200), send_many=many) == "done"
    assert batches == [("/a", "/b")] and log == ["204,205", "closed"]


def test_drive_closes_the_flow_when_send_raises() -> None:
    log: list[str] = []

    def broken(request: Request) -> Response:
        raise ConnectionError("link down")

    flow = _flow(log)  # held here, so only the driver can close it
    with pytest.raises(ConnectionError):
        drive(flow, broken)
    assert log == ["closed"]
    with pytest.raises(StopIteration):
        next(flow)  # closed: it runs no further


def test_drive_closes_the_flow_when_an_event_handler_raises() -> None:
    log: list[str] = []

    def crash(event: Event) -> None:
        raise KeyboardInterrupt

    flow = _flow(log)  # held here, so only the driver can close it
    with pytest.raises(KeyboardInterrupt):
        drive(flow, lambda r: Response(200), crash)
    assert log == ["closed"]
