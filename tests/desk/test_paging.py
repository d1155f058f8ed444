"""The reports table comes in pages that keep the filters and the search.

A coordinator's own profile (made offline) seals a few reports to itself; with pages of two
rows, the table shows one page at a time, says which, and its previous and next links carry
the same filters and search text (in `make test`: no browser, the app in a TestClient).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.desk import coordinator_pages
from clients.local.profile import Profile
from clients.local.sealing import seal_revision
from sync.report import ReportContent
from tests.desk.test_edge import PASSPHRASE, login, make, offline_coordinator, unlock


@pytest.fixture
def five(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "coordinator"
    offline_coordinator(home)
    profile = Profile.open(home, secret_passphrase=PASSPHRASE.encode())
    try:
        for n in range(5):
            place = "checkpoint" if n != 2 else "market"
            content = ReportContent(client_time=1_700_000_000 + n, fields={"place": f"{place} {n}"})
            seal_revision(profile, bytes([n + 1]) * 16, content, None)
    finally:
        profile.close()
    monkeypatch.setattr(coordinator_pages, "PAGE_SIZE", 2)
    desk, client = make(home)
    login(desk, client)
    assert unlock(desk, client) == 303
    return client


def _reports(html: str) -> list[str]:
    return re.findall(r'<a href="/reports/([0-9a-f]{32})">', html)


def _link(html: str, name: str) -> dict[str, list[str]] | None:
    found = re.search(rf'id="page-{name}" rel="\w+" href="([^"]+)"', html)
    return None if found is None else parse_qs(urlsplit(found.group(1).replace("&amp;", "&")).query)


def test_the_table_pages_through_the_matches_keeping_the_search(five) -> None:
    seen: list[str] = []
    html = five.get("/?q=checkpoint&conflict=no").text
    assert "4 of 5 reports." in html and "Page 1 of 2" in html
    assert _link(html, "previous") is None
    seen += _reports(html)
    following = _link(html, "next")
    assert following == {"q": ["checkpoint"], "conflict": ["no"], "page": ["2"]}
    html = five.get("/", params={k: v[0] for k, v in following.items()}).text
    assert "Page 2 of 2" in html and _link(html, "next") is None
    assert _link(html, "previous") == {"q": ["checkpoint"], "conflict": ["no"], "page": ["1"]}
    seen += _reports(html)
    assert len(seen) == 4 == len(set(seen))
    assert bytes([3]) * 16 not in {bytes.fromhex(r) for r in seen}  # the market report


@pytest.mark.parametrize("number", ["999", "0", "-1", "x", ""])
def test_a_page_number_out_of_range_shows_a_real_page(five, number: str) -> None:
    html = five.get(f"/?page={number}").text
    rows = _reports(html)
    assert len(rows) in (1, 2)
    assert ("Page 3 of 3" if number == "999" else "Page 1 of 3") in html
