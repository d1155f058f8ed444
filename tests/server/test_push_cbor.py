"""A push body may be CBOR (PROTOCOL §8.2): the same request and the same results as
JSON, with the envelopes as byte strings; anything else in a CBOR body is a 422
problem, never a 500 and never a partial write."""

from __future__ import annotations

import secrets

import cbor2
import pytest
from server_api import Api, create_org
from starlette.testclient import TestClient

from sync.messages import decode_push_cbor, encode_push_cbor


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


def _chain(org, n: int):
    dev = org.add_device()
    report, parents = secrets.token_bytes(16), []
    for _ in range(n):
        parents = [dev.revision(org.roster, report, parents, b"x").id]
    return dev


def test_a_cbor_push_stores_like_json_and_a_retry_in_either_format_is_a_duplicate(org) -> None:
    dev = _chain(org, 5)
    first = org.push_cbor(dev, dev.sent)
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert [r["status"] for r in results] == ["created"] * len(dev.sent)
    again = org.push(dev, dev.sent).json()["results"]  # JSON retry of the same batch
    assert [r["status"] for r in again] == ["duplicate"] * len(dev.sent)
    assert [r["server_seq"] for r in again] == [r["server_seq"] for r in results]
    page = org.changes().json()
    assert len(page["items"]) == len(dev.sent)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\x00not cbor",
        cbor2.dumps([b"x"]),
        cbor2.dumps({"envelopes": ["text, not bytes"]}),
        cbor2.dumps({"envelopes": [b"x"], "extra": 1}),
        cbor2.dumps({"envelopes": b"x"}),
        b"",
    ],
    ids=["garbage", "array", "text-items", "extra-key", "not-array", "empty"],
)
def test_a_malformed_cbor_push_is_a_422_problem_and_writes_nothing(org, body: bytes) -> None:
    dev = org.add_device()
    response = org.api.call(
        "POST",
        org.path + "/push",
        key=dev.key,
        content=body,
        headers={"content-type": "application/cbor"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_failed"
    assert org.changes().json()["items"] == []


def test_cbor_push_bodies_round_trip_and_are_smaller_than_json() -> None:
    envelopes = [secrets.token_bytes(2430) for _ in range(100)]
    body = encode_push_cbor(envelopes)
    assert decode_push_cbor(body) == envelopes
    json_size = len(b'{"envelopes":[]}') + sum(len(e) * 4 // 3 + 3 for e in envelopes)
    assert len(body) < 0.77 * json_size
