"""The summary page shows the right timeline, says whose clock each time is, and is self-contained.

docs/EVIDENCE.md §6: rendered from the verified bundle only; device times are claims, server
times come from server-signed checkpoints; no script, style sheet, font or image from elsewhere;
report text is escaped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from clients.local.evidence_summary import render_summary
from crypto import ChainKey, message_key_at
from crypto.envelope import _seal_revision_from_parts
from sync.evidence import verify_bundle
from sync.report import ReportContent
from tests.evidence.factory import REPORT_A, build_org, bundle_of, signed


class _Rows(HTMLParser):
    """The text of each table row of the page, and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "data"):
                self.links.append((tag, name, value or ""))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _page() -> tuple[str, _Rows]:
    org = build_org()
    html = render_summary(verify_bundle(signed(org, bundle_of(org))))
    parser = _Rows()
    parser.feed(html)
    return html, parser


def test_the_timeline_lists_each_revision_with_its_claimed_and_its_server_signed_time() -> None:
    html, page = _page()
    timeline = [r for r in page.rows if r and r[0].isdigit()]
    assert [r[0] for r in timeline] == ["1", "2", "3"]
    written = [r[4] for r in timeline]
    assert written == [
        "2026-05-28 20:26:50 UTC",  # T0 + 10, the field device's clock
        "2026-05-28 20:27:10 UTC",  # T0 + 30
        "2026-05-28 20:27:20 UTC",  # T0 + 40, the coordinator's clock
    ]
    stored = [r[5] for r in timeline]
    assert stored[0].startswith("2026-05-28 20:28:20 UTC (server clock; log position 2 of 3")
    assert stored[1].startswith("2026-05-28 20:30:00 UTC (server clock; log position 4 of 5")
    assert stored[2].startswith("2026-05-28 20:31:40 UTC (server clock; log position 6 of 6")
    assert [r[2].split()[1] for r in timeline] == ["field", "field", "coordinator"]
    assert "set place = Market" in timeline[0][6] and "attached market.jpg" in timeline[0][6]
    assert timeline[1][6] == "set victims = 3"
    assert timeline[2][6] == "set place = Central market"
    assert "device clock, claimed" in html and "server-signed checkpoint" in html
    assert REPORT_A.hex() in html


def test_the_page_loads_nothing_from_elsewhere() -> None:
    html, page = _page()
    assert page.links == []
    assert not page.tags & {"script", "link", "img", "iframe", "object", "embed", "base"}
    assert not re.search(r"url\(|@import|https?://", html)


def test_report_text_is_escaped() -> None:
    org = build_org()
    hostile = '<script>alert(1)</script><img src="http://x">'
    content = ReportContent(1, {"place": hostile})
    from tests.evidence.factory import ORG, fixed

    chain = ChainKey(fixed("field chain key"))
    envelope = _seal_revision_from_parts(
        org=ORG, report=REPORT_A, parents=[org.envelopes["a3"].id], seq=5,
        prev=org.envelopes["a2"].id, roster_version=2, key_seq=1,
        message_key=message_key_at(chain, 4), content=content.encode(),
        signing_key=org.field_device, nonce=fixed("hostile nonce", 12),
    )  # fmt: skip
    org.envelopes["a4"], org.keys["a4"] = envelope, message_key_at(chain, 4).raw
    org.contents["a4"] = content.encode()
    html = render_summary(verify_bundle(signed(org, bundle_of(org, ("a1", "a2", "a3", "a4")))))
    parser = _Rows()
    parser.feed(html)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert parser.links == [] and "script" not in parser.tags
