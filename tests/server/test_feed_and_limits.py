"""Changes feed cursors (§9), rate limits and quotas (§11), metrics."""

from __future__ import annotations

import secrets

import pytest
from live_server import METRICS_AUTH, METRICS_TOKEN
from server_api import Api, b64, create_org
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from sync.cursor import decode_cursor, encode_cursor


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


def _fill(org, n: int):
    dev = org.add_device()
    report = secrets.token_bytes(16)
    parents: list[bytes] = []
    for _ in range(n):
        env = dev.revision(org.roster, report, parents, b"x")
        parents = [env.id]
    assert org.push(dev, dev.sent).status_code == 200
    return dev


def test_feed_pages_follow_the_cursor_without_gaps_or_repeats(org) -> None:
    _fill(org, 24)
    seqs, cursor = [], ""
    while True:
        page = org.changes(cursor, limit=7).json()
        seqs += [i["server_seq"] for i in page["items"]]
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert seqs == list(range(1, 26))
    last = org.changes(cursor).json()
    assert {k: last[k] for k in ("items", "cursor", "more")} == {
        "items": [],
        "cursor": cursor,
        "more": False,
    }
    assert last["log"]["prefix"] == []  # the page ends where its checkpoint does (§17.3)


def test_cursor_from_another_epoch_or_ahead_of_the_server_is_409(org, engine: Engine) -> None:
    # §9.2: a restored or replaced server tells the client to re-push and re-pull.
    _fill(org, 2)
    cursor = org.changes().json()["cursor"]
    epoch, seq = decode_cursor(cursor)
    r = org.changes(encode_cursor(secrets.token_bytes(16), seq))
    assert r.status_code == 409 and r.json()["code"] == "cursor_from_other_epoch"
    r = org.changes(encode_cursor(epoch, seq + 1))
    assert r.status_code == 409 and r.json()["code"] == "cursor_from_other_epoch"
    r = org.changes("garbage!")
    assert r.status_code == 400 and r.json()["code"] == "cursor_invalid"
    # A restore from an older backup looks exactly like "ahead of the server".
    with engine.begin() as conn:
        conn.execute(text("UPDATE orgs SET last_seq = 1"))
    assert org.changes(cursor).status_code == 409


def test_device_rate_limit_answers_429_with_retry_after(tmp_path, engine: Engine) -> None:
    from server_api import ADMIN_TOKEN

    settings = Settings(
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        metrics_token=METRICS_TOKEN,
        device_requests_per_minute=3,
    )
    with TestClient(create_app(settings, engine=engine)) as client:
        org = create_org(Api(client))
        codes = [org.as_coordinator("GET", "/roster").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = org.as_coordinator("GET", "/roster")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["code"] == "rate_limited"
        metrics = client.get("/metrics", headers=METRICS_AUTH).text
        assert 'sealbox_rate_limited_total{scope="device"}' in metrics


def test_org_storage_quota_answers_429(tmp_path, engine: Engine) -> None:
    from server_api import ADMIN_TOKEN

    settings = Settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN, org_quota_bytes=4096)
    with TestClient(create_app(settings, engine=engine)) as client:
        org = create_org(Api(client))
        dev = org.add_device()
        for _ in range(4):
            dev.revision(org.roster, secrets.token_bytes(16), [], b"y" * 1000)
        r = org.push(dev, dev.sent)
        assert r.status_code == 429 and r.json()["code"] == "quota_exceeded"
        assert "retry-after" in r.headers
        # Nothing of the refused batch was stored.
        assert org.changes().json()["items"] == []


def test_no_admin_token_means_no_org_creation_and_says_how(tmp_path, engine: Engine) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path), engine=engine)) as client:
        r = client.post(
            "/v1/orgs", json={"roster": b64(b"x")}, headers={"authorization": "Bearer x"}
        )
        assert r.status_code == 403 and r.json()["code"] == "admin_token_unset"
        assert "secrets.token_urlsafe" in r.json()["detail"]


def test_placeholder_admin_tokens_are_refused() -> None:
    from pydantic import ValidationError

    for bad in ("changeme", "short", "x" * 10):
        with pytest.raises(ValidationError):
            Settings(admin_token=bad)


def test_push_metrics_count_results_and_heads(org, client: TestClient) -> None:
    dev = _fill(org, 3)
    org.push(dev, dev.sent)
    text_ = client.get("/metrics", headers=METRICS_AUTH).text
    assert 'sealbox_push_items_total{status="created"} 4.0' in text_
    assert 'sealbox_push_items_total{status="duplicate"} 4.0' in text_
    assert "sealbox_report_heads_count" in text_
    assert 'route="/v1/orgs/{org}/push"' in text_


def test_validation_errors_are_problem_json(org) -> None:
    dev = org.add_device()
    for body in ({"envelopes": ["AA=="]}, {"envelopes": "nope"}, {"other": 1}):
        r = org.api.call("POST", org.path + "/push", body, key=dev.key)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "validation_failed"
    r = org.api.call(
        "POST",
        org.path + "/push",
        key=dev.key,
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    # Unsigned, the same body is refused before it is read (PROTOCOL §7.3).
    r = org.api.client.post(
        org.path + "/push", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"


def test_oversized_bodies_are_refused_before_they_are_read(tmp_path, engine: Engine) -> None:
    # §11.1: a body over the batch limit (in base64, with framing) is a 413 problem.
    settings = Settings(data_dir=tmp_path, max_batch_bytes=2048, max_batch_items=2)
    with TestClient(create_app(settings, engine=engine)) as client:
        r = client.post(
            "/v1/orgs", content=b"x" * 100_000, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"

        def chunks():
            for _ in range(20):
                yield b"x" * 10_000

        r = client.post("/v1/orgs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_feed_as_cbor_is_the_same_page_with_raw_bytes(org) -> None:
    # §9.1: Accept: application/cbor gives the identical page, byte strings raw.
    import cbor2

    from sync.messages import b64decode

    _fill(org, 5)
    as_json = org.changes(limit=4).json()
    r = org.as_coordinator("GET", "/changes?limit=4", headers={"accept": "application/cbor"})
    assert r.headers["content-type"] == "application/cbor"
    as_cbor = cbor2.loads(r.content)
    assert as_cbor["cursor"] == as_json["cursor"] and as_cbor["more"] is True
    assert [i["server_seq"] for i in as_cbor["items"]] == [
        i["server_seq"] for i in as_json["items"]
    ]
    assert [i["envelope"] for i in as_cbor["items"]] == [
        b64decode(i["envelope"]) for i in as_json["items"]
    ]
    assert len(r.content) < len(org.changes(limit=4).content)
