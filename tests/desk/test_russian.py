"""Sealbox Desk in Russian, in Chromium: the pages speak the Russian catalog (with its three
plural forms), say <html lang="ru">, and show Kyrgyz Cyrillic and Arabic-script values
unchanged, each isolated with dir="auto" so that it runs in its own direction.

The first test builds `app.Desk(lang="ru")` and serves it with uvicorn in a thread, on a
coordinator's profile set up through the CLI; the second starts the real `sealbox desk`, which
takes Russian from the POSIX locale (`--lang` chooses it too).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2
import pytest

from clients.desk.app import Desk, create_app, translations
from clients.desk.edge import Gate
from tests.cli.conftest import PASSPHRASE, free_port
from tests.desk.test_a11y import ARABIC, KYRGYZ, NOTE, Org, seed_org, serious_violations

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(280)]

RU = translations("ru")


def ru(message: str) -> str:
    text = RU.gettext(message)
    assert text != message, f"{message!r} has no Russian translation"
    return text


@pytest.fixture
def russian_desk(server, devices) -> Iterator[tuple[Org, Gate]]:
    import uvicorn

    org = seed_org(server, devices)
    gate = Gate(port=free_port())
    desk = Desk(org.coordinator.home, gate, idle_seconds=600, lang="ru")
    desk.worker.submit(desk.unlock, PASSPHRASE.encode()).result()
    config = uvicorn.Config(
        create_app(desk),
        host="127.0.0.1",
        port=gate.port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, name="russian-desk", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not served.started:  # readiness, bounded; no fixed sleep
            assert thread.is_alive(), "the Desk's server thread died during start-up"
            assert time.monotonic() < deadline, "the Desk did not start in 60 s"
            time.sleep(0.05)
        yield org, gate
    finally:
        served.should_exit = True
        thread.join(30)
        desk.worker.shutdown(wait=True)


def _direction(locator) -> str:
    """The direction the browser resolved for the element (dir="auto" looks at its text)."""
    return str(locator.evaluate("e => e.matches(':dir(rtl)') ? 'rtl' : 'ltr'"))


def _check_isolated(cell, text: str, direction: str) -> None:
    """A <bdi> (dir="auto" by the HTML spec) or a dir="auto" element, holding ``text``."""
    expect(cell).to_have_count(1)
    tag, dir_attr = cell.evaluate("e => [e.tagName, e.getAttribute('dir')]")
    assert tag == "BDI" or dir_attr == "auto", cell.evaluate("e => e.outerHTML")
    assert dir_attr in (None, "auto")  # never forced to one direction
    assert cell.inner_text().strip() == text
    assert _direction(cell) == direction


def test_the_desk_in_russian(russian_desk, browser) -> None:
    org, gate = russian_desk
    origin = f"http://127.0.0.1:{gate.port}"
    requests: list[str] = []
    context = browser.new_context()
    context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(gate.url)
        page.wait_for_url(f"{origin}/")
        assert page.locator("html").get_attribute("lang") == "ru"
        assert page.title() == RU.gettext("Sealbox Desk")  # the product keeps its name
        expect(page.locator("main h1")).to_have_text(ru("Reports"))
        nav = page.locator("header nav")
        assert nav.get_attribute("aria-label") == ru("Main")
        for item in ("Reports", "Conflicts", "Findings", "Devices", "Invites", "Sync"):
            expect(nav.locator("a", has_text=ru(item))).to_have_count(1)
        headers = page.locator("main thead th").all_inner_texts()
        assert headers == [
            ru(h) for h in ("Report", "Verification", "Revisions", "Conflicts", "Fields")
        ]
        assert page.locator("label[for=q]").inner_text() == ru("Search")
        main = page.locator("main").inner_text()
        assert ru("%(shown)d of %(total)d reports.") % {"shown": 2, "total": 2} in main
        assert "Reports" not in main and "Search" not in main  # no English left on the page

        # Values on the reports table: in <bdi>, isolated, unchanged, in their own direction.
        row = page.locator("main tbody tr", has=page.locator(f"a[href='/reports/{org.report}']"))
        _check_isolated(row.locator("bdi", has_text=KYRGYZ), KYRGYZ, "ltr")
        _check_isolated(row.locator("bdi", has_text=ARABIC), ARABIC, "rtl")
        assert serious_violations(page) == []

        # The report: the same values in dir="auto" cells, the Kyrgyz note, Russian plurals.
        page.click(f"a[href='/reports/{org.report}']")
        page.wait_for_url(f"{origin}/reports/{org.report}")
        assert page.locator("html").get_attribute("lang") == "ru"
        for cell_text, direction in ((KYRGYZ, "ltr"), (ARABIC, "rtl")):
            cell = page.locator("main td.value", has_text=cell_text)
            expect(cell).to_have_count(1)
            assert cell.get_attribute("dir") == "auto"
            assert cell.inner_text().strip() == cell_text
            assert _direction(cell) == direction
        note = page.locator("ul.notes span[dir=auto]", has_text=NOTE)
        expect(note).to_have_count(1)
        assert note.inner_text() == NOTE
        assert page.locator("main h2").all_inner_texts()[:3] == [
            ru("Fields"), ru("Notes"), ru("Attachments"),
        ]  # fmt: skip
        text = page.locator("main").inner_text()
        match = re.search(r"(\d+) (версия|версии|версий); ", text)
        assert match, text
        count = int(match.group(1))
        expected = RU.ngettext("%(num)d revision; ", "%(num)d revisions; ", count)
        assert match.group(0) == expected % {"num": count}
        assert ru("CONFLICT") in text  # `detained` was changed on both sides
        assert serious_violations(page) == []

        # The conflicts page and its side-by-side choices, in Russian.
        page.click(f"header nav a >> text={ru('Conflicts')}")
        expect(page.locator("main h1")).to_have_text(ru("Conflicts"))
        expect(page.locator(f"#r-{org.report} button")).to_have_text(ru("Resolve"))
    finally:
        context.close()
    assert {urlsplit(u).netloc for u in requests} == {f"127.0.0.1:{gate.port}"}, requests
    # Without the session cookie, the no-session page is in Russian too.
    cookie_less = httpx2.get(f"{origin}/findings")
    assert cookie_less.status_code == 403 and 'lang="ru"' in cookie_less.text


def test_sealbox_desk_speaks_russian_from_the_locale(server, devices, desk_for, browser) -> None:
    """The real `sealbox desk` process, with no --lang, takes Russian from LC_MESSAGES."""
    coordinator = devices("coordinator")
    coordinator.run("org", "create", "--server", server.url, "--name", "Укук коргоо борбору")
    coordinator.env.pop("LC_ALL", None)
    coordinator.env["LC_MESSAGES"] = "ru_RU.UTF-8"
    desk = desk_for(coordinator, env_passphrase=True)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(desk.url)
        page.wait_for_url(f"{desk.origin}/")
        assert page.locator("html").get_attribute("lang") == "ru"
        expect(page.locator("main h1")).to_have_text(ru("Reports"))
        org = page.locator("header span[dir=auto]")
        assert org.inner_text() == "Укук коргоо борбору"
        shown = ru("%(shown)d of %(total)d reports.") % {"shown": 0, "total": 0}
        expect(page.locator("main")).to_contain_text(shown)
        page.click(f"header nav a >> text={ru('Devices')}")
        expect(page.locator("main h1")).to_have_text(ru("Devices"))
    finally:
        context.close()
