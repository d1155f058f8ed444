"""Sealbox Desk's HTTP edge, without a browser: who may talk to it and what it answers.

Each test plays the adversary the edge exists for: a page on another site (CSRF), a
rebinding DNS name (Host), a peer off this machine, a leaked or replayed URL token.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from clients.desk.app import Desk, create_app
from clients.desk.edge import COOKIE, Gate, security_headers
from clients.local.profile import Profile
from clients.local.store import Secrets
from crypto import SigningKey
from sync.roster import Member, Role, Roster

PORT = 45678
ORIGIN = f"http://127.0.0.1:{PORT}"
PASSPHRASE = "correct horse battery staple"


def csp(port: int, ancestors: str = "'none'") -> str:
    """The Desk's policy: nothing from elsewhere, and the only frame a page may hold is one
    of its own decrypted attachments (a PDF, in the browser's viewer)."""
    attachments = f"http://127.0.0.1:{port}/attachments/ http://localhost:{port}/attachments/"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:;"
        f" media-src 'self' blob:; frame-src {attachments}; form-action 'self';"
        f" frame-ancestors {ancestors}; base-uri 'none'"
    )


CSP = csp(PORT)


def offline_coordinator(home: Path) -> None:
    """A founding coordinator's profile made without a server (a genesis roster of one)."""
    secret = Secrets.generate(coordinator=True)
    key, kem = secret.signing_key, secret.kem_key
    assert kem is not None
    org = secrets.token_bytes(16)
    me = Member(key.verify_key.key_id, key.verify_key, Role.COORDINATOR, kem.public_key)
    server_key = SigningKey.generate().verify_key
    genesis = Roster(org, 1, bytes(32), server_key, (me,)).sign(key)
    meta = {
        "server": "http://127.0.0.1:9",
        "org": org,
        "device": key.verify_key.key_id,
        "role": str(Role.COORDINATOR),
        "name": "Clinic",
        "label": "coord",
        "created": 0,
    }
    Profile.create(home, secret, meta, genesis, secret_passphrase=PASSPHRASE.encode()).close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("desk") / "coordinator"
    offline_coordinator(path)
    return path


def make(home: Path, *, idle: float = 600, peer: str = "127.0.0.1") -> tuple[Desk, TestClient]:
    desk = Desk(home, Gate(port=PORT), idle_seconds=idle)
    client = TestClient(
        create_app(desk), base_url=ORIGIN, client=(peer, 50000), follow_redirects=False
    )
    return desk, client


@pytest.fixture
def desk(home: Path) -> Iterator[tuple[Desk, TestClient]]:
    desk, client = make(home)
    with client:
        yield desk, client


def login(desk: Desk, client: TestClient) -> None:
    answer = client.get(f"/login?token={desk.gate.token}")
    assert answer.status_code == 303, answer.text
    assert client.cookies.get(COOKIE)


def unlock(desk: Desk, client: TestClient, passphrase: str = PASSPHRASE) -> int:
    answer = client.post(
        "/unlock", data={"csrf": desk.gate.csrf, "passphrase": passphrase},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    return answer.status_code


def test_the_token_is_exchanged_once_for_an_httponly_samesite_strict_cookie(desk) -> None:
    d, client = desk
    token = d.gate.token
    answer = client.get(f"/login?token={token}")
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and token not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    # Replayed (a leaked terminal line, browser history): refused, and no new session.
    other = TestClient(client.app, base_url=ORIGIN, client=("127.0.0.1", 1), follow_redirects=False)
    replay = other.get(f"/login?token={token}")
    assert replay.status_code == 403 and COOKIE not in replay.headers.get("set-cookie", "")
    assert other.get("/").status_code == 403


def test_without_the_token_or_with_a_wrong_one_nothing_is_served(desk) -> None:
    d, client = desk
    assert client.get("/login?token=" + "x" * 43).status_code == 403
    assert client.get("/login").status_code == 403
    for path in ("/", "/reports/00", "/devices", "/export?format=csv", "/unlock"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "Open the address" in answer.text
    client.cookies.set(COOKIE, "guessed")
    assert client.get("/").status_code == 403
    client.cookies.clear()
    # The right token still works afterwards (a wrong guess does not spend it).
    login(d, client)
    assert client.get("/").status_code == 303  # to /unlock: locked


@pytest.mark.parametrize(
    "host", ["evil.example:45678", "127.0.0.1:1", "localhost", "127.0.0.1.nip.io:45678", ""]
)
def test_a_foreign_host_header_is_refused_dns_rebinding(desk, host: str) -> None:
    d, client = desk
    login(d, client)
    answer = client.get("/unlock", headers={"Host": host})
    assert answer.status_code == 421
    assert "csrf" not in answer.text
    # Even the token exchange: a rebinding page must not get a session either.
    fresh, c2 = make(d.home)
    assert c2.get(f"/login?token={fresh.gate.token}", headers={"Host": host}).status_code == 421
    assert fresh.gate.token, "a refused request must not spend the token"


def test_localhost_is_accepted_as_host(desk) -> None:
    d, client = desk
    login(d, client)
    assert client.get("/unlock", headers={"Host": f"localhost:{PORT}"}).status_code == 200


def test_a_peer_off_this_machine_is_refused(home: Path) -> None:
    d, client = make(home, peer="192.0.2.7")
    with client:
        assert client.get(f"/login?token={d.gate.token}").status_code == 403
        assert d.gate.token


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
        {"Origin": f"http://127.0.0.1:{PORT + 1}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {},
    ],
)
def test_a_state_change_from_another_origin_is_refused_csrf(desk, headers) -> None:
    d, client = desk
    login(d, client)
    answer = client.post(
        "/unlock", data={"csrf": d.gate.csrf, "passphrase": PASSPHRASE}, headers=headers
    )
    assert answer.status_code == 403
    assert d.profile is None, "a cross-site form must not unlock"


@pytest.mark.parametrize(
    "headers",
    [{"Origin": ORIGIN}, {"Origin": "null", "Sec-Fetch-Site": "same-origin"}],
)
def test_a_form_from_the_desk_itself_is_accepted(desk, headers) -> None:
    """What Chromium sends for the Desk's own form under Referrer-Policy: no-referrer."""
    d, client = desk
    login(d, client)
    answer = client.post(
        "/unlock", data={"csrf": d.gate.csrf, "passphrase": PASSPHRASE}, headers=headers
    )
    assert answer.status_code == 303 and d.profile is not None


def test_a_form_without_the_csrf_token_is_refused_even_from_the_desk_origin(desk) -> None:
    d, client = desk
    login(d, client)
    for data in ({"passphrase": PASSPHRASE}, {"passphrase": PASSPHRASE, "csrf": "wrong"}):
        answer = client.post("/unlock", data=data, headers={"Origin": ORIGIN})
        assert answer.status_code == 400
        assert "Traceback" not in answer.text
        assert d.profile is None


def test_every_answer_carries_the_strict_headers(desk) -> None:
    d, client = desk
    answers = [client.get("/"), client.get("/static/desk.css"), client.get("/login?token=no")]
    login(d, client)
    answers += [
        client.get("/unlock"),
        client.get("/nowhere"),
        client.get("/", headers={"Host": "x"}),
    ]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
        for name, value in security_headers(PORT).items():
            assert answer.headers[name] == value
        assert answer.headers["x-frame-options"] == "DENY"


def test_a_wrong_passphrase_is_a_page_and_the_right_one_unlocks(desk) -> None:
    d, client = desk
    login(d, client)
    answer = client.post(
        "/unlock", data={"csrf": d.gate.csrf, "passphrase": "wrong"}, headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 403
    assert "Traceback" not in answer.text and 'name="passphrase"' in answer.text
    assert d.profile is None
    assert unlock(d, client) == 303
    page = client.get("/")
    assert page.status_code == 200 and "0 of 0 reports" in page.text
    assert re.search(r'<html lang="en">', page.text)


def test_pages_have_no_inline_script_or_style_and_forms_carry_the_csrf_token(desk) -> None:
    d, client = desk
    login(d, client)
    unlock(d, client)
    for path in ("/", "/conflicts", "/findings", "/invites", "/sync", "/unlock"):
        answer = client.get(path)
        assert answer.status_code in (200, 303), path
        html = answer.text
        assert "<script>" not in html and "style=" not in html and "<style" not in html
        assert "http://" not in html.replace(ORIGIN, "") and "https://" not in html, path
        for form in re.findall(r'<form method="post".*?</form>', html, re.S):
            assert f'name="csrf" value="{d.gate.csrf}"' in form, path


def test_an_unknown_report_and_a_bad_form_are_pages_not_tracebacks(desk) -> None:
    d, client = desk
    login(d, client)
    unlock(d, client)
    answer = client.get("/reports/zz")
    assert answer.status_code == 404 and "Not found" in answer.text
    answer = client.post("/invites", data={}, headers={"Origin": ORIGIN})
    assert answer.status_code == 400 and "Traceback" not in answer.text


def test_the_desk_locks_after_the_idle_period_and_drops_the_profile(home: Path) -> None:
    d, client = make(home, idle=0.2)
    with client:
        login(d, client)
        unlock(d, client)
        assert client.get("/").status_code == 200
        assert d.profile is not None
        deadline = time.monotonic() + 10
        while d.profile is not None and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition, bounded (the watcher runs every 0.2 s)
        assert d.profile is None and d.reading is None, "the idle watcher did not lock"
        assert client.get("/").headers["location"] == "/unlock"
        assert unlock(d, client) == 303
        assert client.get("/").status_code == 200


def test_lock_closes_the_profile(desk) -> None:
    d, client = desk
    login(d, client)
    unlock(d, client)
    answer = client.post("/lock", data={"csrf": d.gate.csrf}, headers={"Origin": ORIGIN})
    assert answer.status_code == 303 and d.profile is None
    assert client.get("/").headers["location"] == "/unlock"


def test_the_wheel_ships_every_desk_asset() -> None:
    import clients.desk

    root = Path(clients.desk.__file__).parent
    for name in ("templates/base.html", "static/desk.css", "static/desk.js"):
        assert (root / name).is_file(), name
    base = (root / "templates/base.html").read_text()
    assert 'src="/static/desk.js"' in base and 'href="/static/desk.css"' in base


def test_a_request_without_the_session_learns_nothing_while_the_desk_is_unlocked(desk) -> None:
    d, client = desk
    login(d, client)
    unlock(d, client)
    stranger = TestClient(
        client.app, base_url=ORIGIN, client=("127.0.0.1", 2), follow_redirects=False
    )
    for path in ("/", "/reports/00", "/devices", "/sync", "/nowhere"):
        answer = stranger.get(path)
        assert answer.status_code == 403, path
        assert d.gate.csrf not in answer.text and "Clinic" not in answer.text, path
        assert "/lock" not in answer.text


def test_a_bug_is_a_page_without_a_traceback(desk, monkeypatch) -> None:
    d, client = desk
    login(d, client)
    unlock(d, client)

    def broken(*args, **kwargs):
        raise RuntimeError("secret plaintext in an exception message")

    monkeypatch.setattr("clients.desk.reading.Reading.page", broken)
    answer = client.get("/")
    assert answer.status_code == 500
    assert "internal error (RuntimeError)" in answer.text
    assert "secret plaintext" not in answer.text and "Traceback" not in answer.text


def test_a_sync_that_cannot_reach_the_server_ends_on_the_sync_page_with_the_reason(desk) -> None:
    d, client = desk  # this profile's server is 127.0.0.1:9 (discard): nothing answers
    login(d, client)
    unlock(d, client)
    answer = client.post("/sync", data={"csrf": d.gate.csrf}, headers={"Origin": ORIGIN})
    assert answer.status_code == 303 and answer.headers["location"] == "/sync"
    deadline = time.monotonic() + 120
    while True:  # the sync runs on the Desk's worker; the page refreshes itself until done
        page = client.get("/sync").text
        if 'id="sync-result"' in page:
            break
        assert 'http-equiv="refresh"' in page and 'id="sync-progress"' in page
        assert time.monotonic() < deadline, "the sync did not end"
        time.sleep(0.1)
    assert 'role="alert"' in page and "Traceback" not in page
    assert d.last_sync is not None and d.last_sync.done and d.last_sync.error
    assert 'http-equiv="refresh"' not in page


def test_sealbox_desk_without_a_browser_to_open_says_so_and_does_not_serve(home: Path) -> None:
    import subprocess
    import sys

    sealbox = str(Path(sys.executable).parent / "sealbox")
    env = {"PATH": "/nonexistent", "HOME": str(home.parent), "NO_COLOR": "1"}
    done = subprocess.run(
        [sealbox, "desk", "--home", str(home)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert done.returncode == 1, done.stderr
    assert "--no-browser" in done.stderr and "Traceback" not in done.stderr
    assert "token=" not in done.stdout + done.stderr


def test_the_catalog_template_holds_every_string_the_pages_show(tmp_path: Path) -> None:
    """clients/desk/locale/messages.pot is current, so a translation starts from every string
    (regenerate with the pybabel line in clients/desk/locale/README.md)."""
    import subprocess
    import sys

    import clients.desk

    root = Path(clients.desk.__file__).parent
    pybabel = str(Path(sys.executable).parent / "pybabel")
    out = tmp_path / "messages.pot"
    subprocess.run(
        [pybabel, "extract", "-F", str(root / "locale/babel.cfg"), "-k", "N_",
         "--no-location", "--omit-header", "-o", str(out), str(root)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    fresh = out.read_text(encoding="utf-8")

    def ids(text: str) -> set[str]:
        return set(re.findall(r'^msgid "(.+)"$', text, re.M))

    committed = ids((root / "locale/messages.pot").read_text(encoding="utf-8"))
    assert len(committed) > 100
    assert ids(fresh) == committed
