"""The field worker's story in Sealbox Desk, in Chromium, against a real server process.

A field device's profile, enrolled and admitted, opened in the Desk: the field worker
writes a report with two files (one chosen with the file input, one dropped on the form),
syncs, and the coordinator (CLI) reads the report and decrypts both files to the same
bytes. Then the panic wipe: one confirmation, under a second from the click to the neutral
page, the key file and the profile gone, and the Desk answers nothing of it afterwards.
Every request the page makes is recorded: any host but the Desk's fails the test.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.local.store import KEYFILE

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)  # a sync on a busy two-core machine takes seconds

pytestmark = [pytest.mark.browser, pytest.mark.timeout(280)]

DROP = """([name, text]) => {
  const all = new DataTransfer();
  all.items.add(new File([text], name, {type: "text/plain"}));
  const zone = document.getElementById("drop-zone");
  const how = {dataTransfer: all, bubbles: true, cancelable: true};
  zone.dispatchEvent(new DragEvent("dragover", how));
  zone.dispatchEvent(new DragEvent("drop", how));
  return document.getElementById("files").files.length;
}"""


def test_the_field_story(server, devices, desk_for, browser, tmp_path) -> None:
    coordinator, field = devices("coordinator"), devices("field")
    coordinator.run("org", "create", "--server", server.url, "--name", "Legal aid clinic")
    code = coordinator.run("invite", "create", "--role", "field", "--expires", "1h").json["code"]
    field.run("enroll", code, "--label", "Amina's laptop")
    coordinator.run("sync")  # admits the field device

    photo = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(300_000)  # more than one chunk's worth
    dropped = "Witness statement, dropped on the form: " + secrets.token_hex(16)
    desk = desk_for(field)
    requests: list[str] = []
    dialogs: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_default_timeout(30_000)
    try:
        page.goto(desk.url)
        assert page.url == f"{desk.origin}/unlock"
        page.fill("#passphrase", field.env["SEALBOX_PASSPHRASE"])
        page.click("main button[type=submit]")
        # A field profile's page is the field home, and the coordinator's pages are not offered.
        page.wait_for_url(f"{desk.origin}/field")
        nav = page.locator("nav").inner_text()
        assert "Outbox" in nav and "Panic wipe" in nav
        assert "Devices" not in nav and "Invites" not in nav
        assert context.request.get(f"{desk.origin}/devices").status == 403

        # The new report: name/value rows, a narrative, a file chosen and a file dropped.
        page.click("nav >> text=New report")
        page.fill("#field-name-0", "place")
        page.fill("#field-value-0", "Checkpoint 4")
        page.fill("#field-name-1", "detained")
        page.fill("#field-value-1", "2")
        page.fill("#note", "Seen from the bus stop")
        page.set_input_files(
            "#files", files=[{"name": "checkpoint.png", "mimeType": "image/png", "buffer": photo}]
        )
        assert page.evaluate(DROP, ["statement.txt", dropped]) == 2
        expect(page.locator("#file-list")).to_contain_text("statement.txt")
        expect(page.locator("#file-list")).to_contain_text("checkpoint.png")
        page.click("#new-report button[type=submit]")
        page.wait_for_url(f"{desk.origin}/outbox?written=*")
        report = parse_qs(urlsplit(page.url).query)["written"][0]
        expect(page.locator("#written")).to_contain_text(report[:12])
        pending = page.locator("#pending").inner_text()
        assert "checkpoint.png" in pending and "statement.txt" in pending
        assert page.locator("#queued tbody tr").count() >= 1

        # Sync with progress, on the same sync page as the coordinator's.
        page.click("nav >> text=Sync")
        page.click("#sync-button")
        expect(page.locator("#sync-result")).to_contain_text("0 still queued")
        assert "[role=alert]" not in page.content()
        page.click("nav >> text=Outbox")
        expect(page.locator("main")).to_contain_text("0 waiting")
        expect(page.locator("main")).to_contain_text("None.")

        # The coordinator sees the report, and its attachments decrypt to the same bytes.
        coordinator.run("sync")
        shown = coordinator.run("reports", "show", report).json
        assert shown["fields"]["place"]["value"] == "Checkpoint 4"
        assert [n["text"] for n in shown["notes"]] == ["Seen from the bus stop"]
        names = sorted(a["name"] for a in shown["attachments"])
        assert names == ["checkpoint.png", "statement.txt"]
        for name, expected in (("checkpoint.png", photo), ("statement.txt", dropped.encode())):
            out = tmp_path / f"got-{name}"
            coordinator.run("attachments", "get", report, name, "-o", str(out))
            assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(expected).digest()

        # Panic wipe: asks once (a form), then under a second to the neutral page.
        keyfile = field.home / KEYFILE
        assert keyfile.exists()
        page.click("nav >> text=Panic wipe")
        expect(page.locator("#wipe-confirm")).to_be_visible()
        start = time.perf_counter()
        page.click("#wipe-confirm")
        page.wait_for_selector("#neutral")
        took = time.perf_counter() - start
        print(f"panic wipe: {took * 1000:.0f} ms from the confirm click to the neutral page")
        assert took < 1.0, took
        assert not keyfile.exists()
        assert not field.home.exists() or not any(field.home.rglob("*"))
        body = page.content()
        assert "Amina" not in body and "Legal aid clinic" not in body and "csrf" not in body
        assert page.locator("nav").count() == 0

        # Afterwards the Desk answers nothing of the profile, to this session or any other.
        for path in ("/", "/field", "/outbox", "/sync", "/unlock", f"/reports/{report}"):
            answer = context.request.get(f"{desk.origin}{path}")
            assert answer.status == 200 and 'id="neutral"' in answer.text(), path
            assert "Amina" not in answer.text() and "Checkpoint" not in answer.text()
        unlock = context.request.post(
            f"{desk.origin}/unlock",
            form={"csrf": "x", "passphrase": field.env["SEALBOX_PASSPHRASE"]},
            headers={"Origin": desk.origin},
        )
        assert 'id="neutral"' in unlock.text()
        assert not field.home.exists() or not any(field.home.rglob("*"))
    finally:
        context.close()
    assert dialogs == []
    hosts = {urlsplit(u).netloc for u in requests}
    assert hosts == {f"127.0.0.1:{desk.port}"}, requests
    assert requests, "the recorder saw nothing: the interception is not in place"
