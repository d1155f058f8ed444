"""Sealbox Desk's reports page works by keyboard alone: Tab reaches the search field, Enter
searches, Tab reaches the first report link, Enter opens it. Every key is page.keyboard."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.desk.test_a11y import KYRGYZ, seed_org

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=60_000)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(280)]

MAX_TABS = 40  # the header's links and button, then the main content: far fewer than this


def tab_to(page, selector: str) -> list[str]:
    """Press Tab until the focused element matches ``selector``; the stops on the way."""
    stops: list[str] = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        here = page.evaluate(
            "s => { const e = document.activeElement;"
            " return [e.matches(s), e.tagName + (e.id ? '#' + e.id : '')"
            " + (e.getAttribute('href') ? '[' + e.getAttribute('href') + ']' : '')]; }",
            selector,
        )
        stops.append(here[1])
        if here[0]:
            return stops
    raise AssertionError(f"{MAX_TABS} Tabs never reached {selector}: {stops}")


def focus_is_visible(page) -> bool:
    """The focused element shows a focus ring (an outline or a box-shadow)."""
    return bool(
        page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0)"
            " || s.boxShadow !== 'none'; }"
        )
    )


def test_the_reports_page_works_by_keyboard_alone(server, devices, desk_for, browser) -> None:
    org = seed_org(server, devices)
    desk = desk_for(org.coordinator, env_passphrase=True)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(desk.url)
        page.wait_for_url(f"{desk.origin}/")
        stops = tab_to(page, "#q")
        assert focus_is_visible(page), "the search field shows no focus ring"
        assert stops[0].startswith("A["), stops  # the header's navigation comes first
        word = KYRGYZ.split()[-1]  # Cyrillic typed as keystrokes
        page.keyboard.type(word)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        query = parse_qs(urlsplit(page.url).query)
        assert query.get("q") == [word], page.url
        expect(page.locator("main tbody a[href^='/reports/']")).to_have_count(1)

        tab_to(page, "main tbody a[href^='/reports/']")
        assert page.evaluate("() => document.activeElement.getAttribute('href')") == (
            f"/reports/{org.report}"
        )
        assert focus_is_visible(page), "the report link shows no focus ring"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url == f"{desk.origin}/reports/{org.report}"
        expect(page.locator("main td.value", has_text=KYRGYZ)).to_have_count(1)
    finally:
        context.close()
