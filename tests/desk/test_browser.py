"""The coordinator's story in Sealbox Desk, in Chromium, against a real server process.

A field device writes a report with the CLI and syncs; the coordinator opens the Desk on
its one-time address, unlocks it, admits the device (after comparing its code), syncs,
reads the report, edits it into a conflict, resolves it, adds a note, exports, and revokes
the device. Throughout, every request the page makes is recorded: any host but the Desk's
fails the test, as does any dialog the story did not ask for (a value run as script).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from sync.evidence import verify_bundle
from sync.invite import InviteCode
from tests.desk.test_edge import csp

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)  # a sync on a busy two-core machine takes seconds

pytestmark = [pytest.mark.browser, pytest.mark.timeout(280)]

HOSTILE_SCRIPT = "<script>alert('xss')</script><img src=x onerror=alert(1)>"
HOSTILE_FORMULA = '=HYPERLINK("http://evil.example","click")'


def _org(coordinator, field, server) -> None:
    coordinator.run("org", "create", "--server", server.url, "--name", "Legal aid clinic")
    code = coordinator.run("invite", "create", "--role", "field", "--expires", "1h").json["code"]
    field.run("enroll", code, "--label", "Amina's laptop")


def test_the_coordinator_story(server, devices, desk_for, browser, tmp_path) -> None:
    coordinator, field = devices("coordinator"), devices("field")
    _org(coordinator, field, server)
    field_id = field.run("status").json["device_id"]
    report = field.run(
        "report", "new", "-f", "place=Checkpoint 4", "-f", "detained=2",
        "-f", f"remark={HOSTILE_SCRIPT}", "-f", f"contact={HOSTILE_FORMULA}",
        "--note", "Seen from the bus stop",
    ).json["report_id"]  # fmt: skip
    field.run("sync")

    desk = desk_for(coordinator)
    requests: list[str] = []
    dialogs: list[str] = []
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    # A reference the CSP blocks never reaches the route recorder: the console says it.
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(30_000)
    try:
        # Open on the one-time address: the token becomes a cookie, then the lock page.
        first = page.goto(desk.url)
        assert page.url == f"{desk.origin}/unlock"
        headers = first.all_headers() if first else {}
        assert headers["content-security-policy"] == csp(desk.port)
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        cookies = context.cookies()
        assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]
        page.fill("#passphrase", "not the passphrase")
        page.click("main button[type=submit]")
        expect(page.locator("[role=alert]")).to_be_visible()
        page.fill("#passphrase", field.env["SEALBOX_PASSPHRASE"])
        page.click("main button[type=submit]")
        page.wait_for_url(f"{desk.origin}/")
        expect(page.locator("main")).to_contain_text("0 of 0 reports")

        # Devices: the field device is pending admission, with its code to compare by phone.
        page.click("nav >> text=Devices")
        row = page.locator(f"tr[data-device='{field_id}']")
        assert "pending admission" in row.inner_text()
        assert "Amina" in row.inner_text()  # its label, opened with the invite's secret
        code = row.locator("code.code").inner_text().replace(" ", "").lower()
        assert field_id.startswith(code[:32])
        row.locator("text=Admit (sync)").click()
        page.wait_for_url(f"{desk.origin}/sync")
        expect(page.locator("#sync-result")).to_be_visible()  # it refreshes until done
        result = page.locator("#sync-result").inner_text()
        assert f"Admitted device {field_id[:12]}" in result
        assert "1 reports" in result or "1 report" in result

        # The report, read after local decryption; hostile values shown as text, not run.
        page.click("nav >> text=Reports")
        page.click(f"a[href='/reports/{report}']")
        page.wait_for_url(f"{desk.origin}/reports/{report}")
        body = page.locator("main").inner_text()
        assert "Checkpoint 4" in body and "Seen from the bus stop" in body
        assert HOSTILE_SCRIPT in body
        assert page.locator("main script, main img").count() == 0
        assert "verified" in body

        # Full-text search and a filter find it; another word does not.
        page.goto(f"{desk.origin}/?q=bus+stop")
        assert page.locator(f"a[href='/reports/{report}']").count() == 1
        page.goto(f"{desk.origin}/?q=nowhere-to-be-found")
        assert page.locator(f"a[href='/reports/{report}']").count() == 0
        page.goto(f"{desk.origin}/?field=place&value=checkpoint&verification=verified")
        assert page.locator(f"a[href='/reports/{report}']").count() == 1

        # Both edit `detained` while apart: a conflict. The coordinator's edit adds a note.
        field.run("report", "edit", report, "--field", "detained=3")
        field.run("sync")
        page.goto(f"{desk.origin}/reports/{report}")
        page.fill("#edit-field", "detained")
        page.fill("#edit-value", "4")
        page.fill("#edit-note", "Confirmed by phone")
        page.click("form.edit button")
        expect(page.locator("ul.notes")).to_contain_text("Confirmed by phone")
        page.click("nav >> text=Sync")
        page.click("#sync-button")
        expect(page.locator("#sync-result")).to_contain_text("1 with conflicts")

        # Conflicts side by side; the coordinator chooses the field device's value.
        page.click("nav >> text=Conflicts")
        section = page.locator(f"#r-{report}")
        choices = section.locator("label.choice")
        assert choices.count() == 3  # two values and "another value"
        choice = section.locator("label.choice", has_text=f"by {field_id[:12]}")
        assert choice.locator("span.value").inner_text() == "3"
        choice.locator("input").check()
        section.locator("text=Resolve").click()
        page.wait_for_url(f"{desk.origin}/reports/{report}")
        assert "CONFLICT" not in page.locator("main table").inner_text()
        page.click("nav >> text=Sync")
        page.click("#sync-button")
        expect(page.locator("#sync-result")).to_contain_text("0 with conflicts")
        shown = coordinator.run("reports", "show", report).json
        assert shown["fields"]["detained"] in ("3", {"value": "3"}) or "3" in json.dumps(
            shown["fields"]["detained"]
        )

        # Export: CSV with the formula neutralised, and JSON exact.
        page.click("nav >> text=Reports")
        with page.expect_download() as download:
            page.click("#export-csv")
        text = Path(download.value.path()).read_text(encoding="utf-8")
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        assert "Checkpoint 4" in cells
        assert HOSTILE_FORMULA not in cells and any(c.endswith(HOSTILE_FORMULA) for c in cells)
        with page.expect_download() as download:
            page.click("#export-json")
        exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
        assert [r["report_id"] for r in exported] == [report]

        # Revoke the (seized) field device; its next sync is refused.
        page.click("nav >> text=Devices")
        row = page.locator(f"tr[data-device='{field_id}']")
        row.locator("text=Revoke").click()
        expect(page.locator(f"tr[data-device='{field_id}']")).to_contain_text("revoked after seq")
        assert dialogs == ["Revoke this device? Its later uploads will be refused."]
        field.run("report", "new", "-f", "place=after the raid")
        assert field.run("sync", check=False).code == 3

        # Lock: the profile closes; the pages answer the unlock form only.
        page.click("header button >> text=Lock")
        page.wait_for_url(f"{desk.origin}/unlock")
        page.goto(f"{desk.origin}/reports/{report}")
        assert page.url == f"{desk.origin}/unlock"
        assert "Checkpoint 4" not in page.content()
    finally:
        context.close()

    blocked = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
    assert blocked == [], blocked
    hosts = {urlsplit(u).netloc for u in requests}
    assert hosts == {f"127.0.0.1:{desk.port}"}, requests
    assert requests, "the recorder saw nothing: the interception is not in place"

    # The spent token, a foreign Host and a foreign Origin are refused by the live process.
    assert httpx2.get(desk.url).status_code == 403
    assert httpx2.get(desk.origin + "/", headers={"Host": "evil.example"}).status_code == 421
    answer = httpx2.post(
        desk.origin + "/unlock", data={"passphrase": "x"}, headers={"Origin": "http://evil.example"}
    )
    assert answer.status_code == 403


def test_invites_from_the_desk_enroll_a_device_and_a_cancelled_one_is_never_admitted(
    server, devices, desk_for, browser
) -> None:
    coordinator, field, intruder = devices("coordinator"), devices("field"), devices("intruder")
    coordinator.run("org", "create", "--server", server.url, "--name", "Clinic")
    desk = desk_for(coordinator, env_passphrase=True)  # unlocked from SEALBOX_PASSPHRASE
    requests: list[str] = []
    context = browser.new_context()
    context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(desk.url)
        page.wait_for_url(f"{desk.origin}/")
        codes = []
        for _ in range(2):
            page.goto(f"{desk.origin}/invites")
            page.select_option("#role", "field")
            page.fill("#expires", "2h")
            page.click("main form button >> text=Create invite")
            expect(page.locator("#invite-code")).to_be_visible()
            assert page.locator(".qr svg").count() == 1  # inline SVG, no image request
            codes.append(page.locator("#invite-code").inner_text())
        page.reload()  # the code is shown once
        assert page.locator("#invite-code").count() == 0
        assert all(c.startswith("sbx1:") for c in codes) and codes[0] != codes[1]

        field.run("enroll", codes[0], "--label", "Field laptop")
        intruder.run("enroll", codes[1], "--label", "Intercepted code")
        # The second code leaked: cancel it before the next sync admits its device.
        assert page.locator("tbody tr").count() == 2
        leaked = InviteCode.decode(codes[1]).invite_id.hex()[:12]
        page.locator("tbody tr", has_text=leaked).locator("text=Cancel").click()
        # Cancelled here and on the server (PROTOCOL §6.7), which says who had used it.
        row = page.locator("tbody tr", has_text=leaked)
        expect(row).to_contain_text("cancelled")
        assert row.locator("button").count() == 0  # nothing left to cancel
        intruder_id = intruder.run("status").json["device_id"]
        expect(row).to_contain_text(intruder_id[:12])

        page.goto(f"{desk.origin}/sync")
        page.click("#sync-button")
        field_id = field.run("status").json["device_id"]
        expect(page.locator("#sync-result")).to_contain_text(f"Admitted device {field_id[:12]}")
        result = page.locator("#sync-result").inner_text()
        assert f"Admitted device {intruder_id[:12]}" not in result
        assert f"device {intruder_id[:12]}, enrolled with it, is not admitted" in result
        page.goto(f"{desk.origin}/devices")
        assert "admitted" in page.locator(f"tr[data-device='{field_id}']").inner_text()
        intruder_row = page.locator(f"tr[data-device='{intruder_id}']").inner_text()
        assert "invite cancelled" in intruder_row and "pending admission" not in intruder_row
        assert "Intercepted" not in intruder_row  # its label opened with no secret kept

        page.goto(f"{desk.origin}/findings")
        expect(page.locator("main h1")).to_have_text("Findings")
    finally:
        context.close()
    assert {urlsplit(u).netloc for u in requests} == {f"127.0.0.1:{desk.port}"}, requests


def test_the_desk_locks_itself_when_idle(server, devices, desk_for, browser) -> None:
    coordinator = devices("coordinator")
    coordinator.run("org", "create", "--server", server.url, "--name", "Clinic")
    # 6 s: the period runs from the Desk's start, and on a busy machine the browser took
    # longer than 1.2 s to arrive, so the Desk had locked before the page could be open.
    desk = desk_for(coordinator, env_passphrase=True, idle_minutes=0.1)
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(desk.url, wait_until="commit")  # it may lock before the page's load event
        page.wait_for_url(f"{desk.origin}/", wait_until="commit")
        # Left alone, the open page leaves for the lock page by itself once the idle period
        # has passed, and the Desk has closed the profile by then (the unlock form shows).
        page.wait_for_url(f"{desk.origin}/unlock", timeout=30_000)
        expect(page.locator("#passphrase")).to_be_visible()
        assert page.locator("nav").count() == 0
        page.fill("#passphrase", coordinator.env["SEALBOX_PASSPHRASE"])
        page.click("main button[type=submit]")
        # Unlocked again, it is back on the reports (it may lock once more 6 s later: on a
        # busy machine the page's load event can come after that, so wait for the commit).
        page.wait_for_url(f"{desk.origin}/", wait_until="commit")
    finally:
        context.close()


def _png(width: int, height: int) -> bytes:
    """A small valid PNG (red), written here: no image library needed."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]/Contents 4 0 R"
    b"/Resources<</Font<</F1 5 0 R>>>>>>endobj\n"
    b"4 0 obj<</Length 44>>stream\nBT /F1 18 Tf 20 40 Td (Sealbox PDF) Tj ET\nendstream endobj\n"
    b"5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"
)
"""A one-page PDF (no xref table: viewers rebuild it), written here: no PDF library needed."""

PDF_VIEWER = {"chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai", "chrome://resources"}
"""Chromium's own PDF viewer (an extension inside the browser, no network): its requests."""


def _foreign(requests: list[str], port: int) -> list[str]:
    """Requests to anything but the Desk, apart from the browser's own PDF viewer."""
    mine = f"127.0.0.1:{port}"
    return [
        u
        for u in requests
        if urlsplit(u).netloc != mine
        and f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" not in PDF_VIEWER
    ]


def test_a_photo_is_decrypted_locally_and_shown_inline_and_html_is_never_served(
    server, devices, desk_for, browser, tmp_path
) -> None:
    coordinator, field = devices("coordinator"), devices("field")
    _org(coordinator, field, server)
    coordinator.run("sync")  # admits the field device before it uploads
    photo = tmp_path / "checkpoint.png"
    photo.write_bytes(_png(7, 5))
    page_file = tmp_path / "evil.html"
    page_file.write_text("<script>alert('ran on the Desk origin')</script>")
    pdf = tmp_path / "statement.pdf"
    pdf.write_bytes(PDF)
    report = field.run(
        "report", "new", "-f", "place=Checkpoint 4", "--attach", str(photo),
        "--attach", str(page_file), "--attach", str(pdf),
    ).json["report_id"]  # fmt: skip
    field.run("sync")
    desk = desk_for(coordinator, env_passphrase=True)
    requests: list[str] = []
    dialogs: list[str] = []
    context = browser.new_context()
    context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(30_000)
    try:
        page.goto(desk.url)
        page.wait_for_url(f"{desk.origin}/")
        page.goto(f"{desk.origin}/sync")
        page.click("#sync-button")
        expect(page.locator("#sync-result")).to_contain_text("1 report")
        page.goto(f"{desk.origin}/reports/{report}")
        image = page.locator("img.inline-attachment")
        expect(image).to_have_count(1)
        image.scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('img.inline-attachment').complete")
        size = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert size == [7, 5], "the photo did not decode: not decrypted, or tampered"
        items = page.locator("ul.attachments li")
        html_item = items.filter(has_text="evil.html")
        assert html_item.locator("img, audio, video, iframe, object, embed").count() == 0
        # The PDF: framed from the Desk's own decrypted attachment URL, in Chromium's viewer.
        shown = coordinator.run("reports", "show", report).json["attachments"]
        pdf_id = next(a["id"] for a in shown if a["name"] == "statement.pdf")
        pdf_url = f"{desk.origin}/attachments/{report}/{pdf_id}"
        frame = page.locator("iframe.inline-pdf")
        expect(frame).to_have_count(1)
        assert frame.get_attribute("src") == f"/attachments/{report}/{pdf_id}"
        assert frame.get_attribute("title") == "PDF: statement.pdf"
        frame.scroll_into_view_if_needed()
        page.wait_for_function(
            "url => [...document.querySelectorAll('iframe')].some(f => f.src === url)", arg=pdf_url
        )
        expect(page.frame_locator("iframe.inline-pdf").locator("embed, body")).not_to_have_count(0)
        assert pdf_url in [f.url for f in page.frames], [f.url for f in page.frames]
        answer = context.request.get(pdf_url)
        assert answer.status == 200 and answer.body() == PDF  # decrypted, verified, whole
        assert answer.headers["content-type"] == "application/pdf"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "SAMEORIGIN"  # only the Desk may frame it
        assert answer.headers["content-security-policy"] == csp(desk.port, "'self'")
        assert page.evaluate("navigator.pdfViewerEnabled") is True
        # Asked for directly (a link in a note, a guess), the HTML is refused, not served.
        html_id = next(
            a["id"]
            for a in coordinator.run("reports", "show", report).json["attachments"]
            if a["name"] == "evil.html"
        )
        answer = context.request.get(f"{desk.origin}/attachments/{report}/{html_id}")
        assert answer.status == 415
        assert "text/html" not in answer.headers["content-type"] or "ran on" not in answer.text()
        # An evidence bundle of the report (PROTOCOL §22): it verifies offline, photo included.
        # Pressed from the keyboard: a click is dispatched at coordinates, which the PDF
        # viewer's late layout could still move (Chromium 156 missed the button that way).
        page.focus("#evidence-button")
        with page.expect_download() as download:
            page.keyboard.press("Enter")
        bundle = tmp_path / "evidence.cbor"
        bundle.write_bytes(Path(download.value.path()).read_bytes())
        checked = coordinator.run("evidence", "verify", str(bundle)).json
        assert checked["verified"] is True and list(checked["reports"]) == [report]
        files = checked["reports"][report]["state"]["attachments"]
        assert {a["name"] for a in files} == {"checkpoint.png", "evil.html", "statement.pdf"}
        included = verify_bundle(bundle.read_bytes()).attachments.values()
        assert [a.included for a in included] == [True, True, True]  # the files themselves
        assert dialogs == []
    finally:
        context.close()
    assert _foreign(requests, desk.port) == [], requests
    assert f"{desk.origin}/attachments/{report}/{pdf_id}" in requests
    blocked = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
    assert blocked == [], blocked
    # The decrypted files touched no disk outside the store: no PNG or PDF under the home.
    png = _png(7, 5)
    found = [p for p in coordinator.home.rglob("*") if p.is_file() and p.read_bytes() in (png, PDF)]
    assert found == []
