"""Field mode's edge, without a browser: a field device's profile is offered no coordinator
page, and the panic wipe refuses a form without the CSRF token or from another origin."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from clients.desk.app import Desk, create_app
from clients.desk.edge import Gate
from clients.local.profile import Profile
from clients.local.store import KEYFILE, Secrets
from crypto import SigningKey
from sync.roster import Member, Role, Roster
from tests.desk.test_edge import ORIGIN, PASSPHRASE, PORT, login

COORDINATOR_PAGES = ["/", "/conflicts", "/findings", "/devices", "/invites", "/export"]


def offline_field(home: Path) -> None:
    """A field device's profile made without a server (a coordinator's genesis roster)."""
    coordinator = Secrets.generate(coordinator=True)
    ckey, ckem = coordinator.signing_key, coordinator.kem_key
    assert ckem is not None
    secret = Secrets.generate(coordinator=False)
    key = secret.signing_key
    org = secrets.token_bytes(16)
    boss = Member(ckey.verify_key.key_id, ckey.verify_key, Role.COORDINATOR, ckem.public_key)
    genesis = Roster(org, 1, bytes(32), SigningKey.generate().verify_key, (boss,)).sign(ckey)
    meta = {
        "server": "http://127.0.0.1:9",
        "org": org,
        "device": key.verify_key.key_id,
        "role": str(Role.FIELD),
        "name": "Clinic",
        "label": "Amina's laptop",
        "created": 0,
    }
    Profile.create(home, secret, meta, genesis, secret_passphrase=PASSPHRASE.encode()).close()


@pytest.fixture
def field(tmp_path: Path) -> Iterator[tuple[Desk, TestClient]]:
    home = tmp_path / "field"
    offline_field(home)
    desk = Desk(home, Gate(port=PORT), idle_seconds=600)
    client = TestClient(
        create_app(desk), base_url=ORIGIN, client=("127.0.0.1", 50000), follow_redirects=False
    )
    with client:
        login(desk, client)
        answer = client.post(
            "/unlock", data={"csrf": desk.gate.csrf, "passphrase": PASSPHRASE},
            headers={"Origin": ORIGIN},
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        yield desk, client


def test_a_field_profile_gets_the_field_home_and_no_coordinator_page(field) -> None:
    desk, client = field
    assert desk.field
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/field"
    page = client.get("/field")
    assert page.status_code == 200
    assert 'href="/devices"' not in page.text and 'href="/wipe"' in page.text
    for path in COORDINATOR_PAGES:
        answer = client.get(path)
        assert answer.status_code in (403, 303), path
        if answer.status_code == 303:
            assert answer.headers["location"] == "/field", path
    for path in ("/reports/" + "00" * 16, "/devices/" + "00" * 32 + "/revoke", "/invites"):
        answer = client.post(path, data={"csrf": desk.gate.csrf}, headers={"Origin": ORIGIN})
        assert answer.status_code == 403, path
    assert client.get("/outbox").status_code == 200
    assert client.get("/field/new").status_code == 200


def test_the_wipe_refuses_a_missing_token_and_a_foreign_origin(field) -> None:
    desk, client = field
    keyfile = desk.home / KEYFILE
    form = client.get("/wipe")
    assert form.status_code == 200 and 'action="/wipe"' in form.text
    missing = client.post("/wipe", data={}, headers={"Origin": ORIGIN})
    assert missing.status_code == 400
    wrong = client.post("/wipe", data={"csrf": "x" * 43}, headers={"Origin": ORIGIN})
    assert wrong.status_code == 400
    foreign = client.post(
        "/wipe", data={"csrf": desk.gate.csrf}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    cross_site = client.post(
        "/wipe", data={"csrf": desk.gate.csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    assert keyfile.exists() and desk.profile is not None and not desk.wiped

    done = client.post("/wipe", data={"csrf": desk.gate.csrf}, headers={"Origin": ORIGIN})
    assert done.status_code == 200 and 'id="neutral"' in done.text
    assert not keyfile.exists() and not desk.home.exists()
    assert desk.profile is None and desk.wiped
    for path in ("/", "/field", "/outbox", "/sync", "/unlock", "/login?token=x"):
        answer = client.get(path)
        assert answer.status_code == 200 and 'id="neutral"' in answer.text, path
        assert "Amina" not in answer.text and "Clinic" not in answer.text


def test_a_coordinator_is_offered_no_field_page(tmp_path: Path) -> None:
    from tests.desk.test_edge import offline_coordinator

    home = tmp_path / "coordinator"
    offline_coordinator(home)
    desk = Desk(home, Gate(port=PORT), idle_seconds=600)
    with TestClient(
        create_app(desk), base_url=ORIGIN, client=("127.0.0.1", 50000), follow_redirects=False
    ) as client:
        login(desk, client)
        client.post(
            "/unlock", data={"csrf": desk.gate.csrf, "passphrase": PASSPHRASE},
            headers={"Origin": ORIGIN},
        )  # fmt: skip
        assert not desk.field
        for path in ("/field", "/outbox", "/wipe"):
            assert client.get(path).status_code == 403, path
        answer = client.post("/wipe", data={"csrf": desk.gate.csrf}, headers={"Origin": ORIGIN})
        assert answer.status_code == 403 and home.exists()


def test_a_report_with_files_is_sealed_from_memory_into_the_outbox(field) -> None:
    desk, client = field
    secret = b"\x89PNG plaintext that must never reach the disk " + secrets.token_bytes(2_000_000)
    answer = client.post(
        "/field/new",
        data={
            "csrf": desk.gate.csrf,
            "field-name": ["place", ""],
            "field-value": ["Checkpoint 4", ""],
            "note": "Seen from the bus stop",
        },
        files=[("files", ("photo.png", secret, "image/png"))],
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/outbox?written=")
    outbox = client.get(answer.headers["location"])
    assert "photo.png" in outbox.text and "sealed into the outbox" in outbox.text
    needle = secret[-64:]
    for path in desk.home.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    refused = client.post(
        "/field/new",
        data={"field-name": "place", "field-value": "x"},
        files=[("files", ("a.txt", b"a", "text/plain"))],
        headers={"Origin": ORIGIN},
    )
    assert refused.status_code == 400
