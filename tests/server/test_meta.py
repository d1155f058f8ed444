"""Server description, health, readiness, metrics, and the problem+json shape of errors."""

from __future__ import annotations

from live_server import METRICS_AUTH
from starlette.testclient import TestClient

from server import migrate
from server.app import create_app
from server.db import make_engine
from server.settings import Settings


def test_server_info_lists_protocol_suite_key_and_limits(client: TestClient) -> None:
    body = client.get("/v1/server").json()
    assert body["protocol_version"] == 1 and body["suite"] == 1
    assert len(body["server_key"]) == 43  # 32 bytes, base64url without padding
    assert body["limits"]["max_batch_items"] >= 100


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_refuses_an_unmigrated_database(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_ready"
        migrate.upgrade(engine)
        assert client.get("/readyz").status_code == 200


def test_unknown_route_and_wrong_method_are_problems(client: TestClient) -> None:
    response = client.get("/v1/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://sealbox.dev/problems/not_found"
    response = client.delete("/v1/server")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


def test_metrics_exposes_request_counters(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics", headers=METRICS_AUTH).text
    assert 'sealbox_requests_total{method="GET",route="/healthz",status="200"}' in text
