"""Strict push bodies (PROTOCOL §8.2: 415, trailing CBOR 422) and the operator surfaces:
``/metrics`` behind a token, ``/docs`` off by default and never from a CDN (§7.5,
docs/OPERATIONS.md). The push rules run on both backends through the app; the
surfaces are also checked on a real ``sealbox-server serve``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import cbor2
import httpx2
import pytest
from live_server import METRICS_AUTH, METRICS_TOKEN, LiveServer
from server_api import ADMIN_TOKEN, Api, b64, create_org
from sqlalchemy import Engine
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from sync.messages import encode_push_cbor


@pytest.fixture
def org(client: TestClient):
    return create_org(Api(client))


def _stored(org) -> int:
    return len(org.changes().json()["items"])


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_push_that_is_not_json_or_cbor_is_415_and_stores_nothing(
    org, content_type: str | None
) -> None:
    # PROTOCOL §8.2: before, a text/plain or untyped JSON push was parsed and stored.
    dev = org.add_device()
    dev.revision(org.roster, secrets.token_bytes(16), [], b"first")
    before = _stored(org)
    body = {"envelopes": [b64(e.to_bytes()) for e in dev.sent]}
    headers = {} if content_type is None else {"content-type": content_type}
    r = org.api.call(
        "POST",
        org.path + "/push",
        key=dev.key,
        content=json.dumps(body).encode(),
        headers=headers,
    )
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "unsupported_media_type"
    assert problem["type"] == "https://sealbox.dev/problems/unsupported_media_type"
    assert problem["accepted"] == ["application/json", "application/cbor"]
    assert r.headers["accept-post"] == "application/json, application/cbor"
    assert _stored(org) == before
    # The same bytes with the right type are stored: the refusal is about the type only.
    assert org.push(dev, dev.sent).status_code == 200
    assert _stored(org) == before + 2


def test_a_cbor_push_with_bytes_after_the_map_is_422_and_stores_nothing(org) -> None:
    dev = org.add_device()
    dev.revision(org.roster, secrets.token_bytes(16), [], b"first")
    before = _stored(org)
    good = encode_push_cbor([e.to_bytes() for e in dev.sent])
    for trailing in (b"\x00", cbor2.dumps({"envelopes": []}), b"junk"):
        r = org.api.call(
            "POST",
            org.path + "/push",
            key=dev.key,
            content=good + trailing,
            headers={"content-type": "application/cbor"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "validation_failed"
    assert _stored(org) == before
    r = org.push_cbor(dev, dev.sent)
    assert r.status_code == 200 and _stored(org) == before + 2


def test_metrics_need_the_token(tmp_path: Path, engine: Engine) -> None:
    off = Settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN)
    with TestClient(create_app(off, engine=engine)) as client:
        r = client.get("/metrics", headers=METRICS_AUTH)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert "SEALBOX_METRICS_TOKEN" in r.json()["detail"]
        assert "sealbox_requests_total" not in r.text
    on = Settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN, metrics_token=METRICS_TOKEN)
    with TestClient(create_app(on, engine=engine)) as client:
        for headers in ({}, {"authorization": "Bearer " + "w" * 40}, {"authorization": "x"}):
            r = client.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert r.headers["content-type"] == "application/problem+json"
        r = client.get("/metrics", headers=METRICS_AUTH)
        assert r.status_code == 200 and "sealbox_requests_total" in r.text


def test_a_weak_metrics_token_is_refused_at_start() -> None:
    from pydantic import ValidationError

    for bad in ("changeme", "short"):
        with pytest.raises(ValidationError, match="SEALBOX_METRICS_TOKEN"):
            Settings(metrics_token=bad)


def _external_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)""", html)


def test_docs_are_off_by_default_and_openapi_stays(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 404
    r = client.get("/openapi.json")
    assert r.status_code == 200 and "/v1/orgs/{org}/push" in r.json()["paths"]


def test_docs_when_on_load_nothing_from_another_host(tmp_path: Path, engine: Engine) -> None:
    settings = Settings(data_dir=tmp_path, api_docs=True)
    with TestClient(create_app(settings, engine=engine)) as client:
        r = client.get("/docs")
        assert r.status_code == 200 and "swagger" in r.text.lower()
        urls = _external_urls(r.text)
        assert urls, r.text
        for url in urls:
            assert url.startswith("/"), url  # same origin: no CDN, no third party
            assert not url.startswith("//"), url
            assert client.get(url).status_code == 200, url
        assert "http://" not in r.text and "https://" not in r.text.replace(
            "https://sealbox.dev", ""
        )
        assert client.get("/openapi.json").status_code == 200


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path / "data", tmp_path / "server.log", env={"SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    try:
        server.migrate()
        server.start()
        yield server
    finally:
        server.stop()


def test_a_real_server_guards_metrics_and_serves_no_docs(live: LiveServer) -> None:
    with httpx2.Client(base_url=live.base_url, timeout=30) as http:
        assert http.get("/metrics").status_code == 401
        r = http.get("/metrics", headers=METRICS_AUTH)
        assert r.status_code == 200 and "sealbox_requests_total" in r.text
        assert http.get("/docs").status_code == 404
        assert http.get("/openapi.json").status_code == 200
