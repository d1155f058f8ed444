"""Every section of docs/PROTOCOL.md that states a MUST is cited by at least one test.

A test cites a section by naming it ("PROTOCOL §4.5", "§13.6") in its docstring or a comment.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SECTION = re.compile(r"^(?:#+ |- \*\*|- )§(\d+(?:\.\d+)*)")


def _sections_with_musts() -> set[str]:
    found: set[str] = set()
    current: str | None = None
    for line in (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8").splitlines():
        match = _SECTION.match(line)
        if match:
            current = match.group(1)
        if current and re.search(r"\bMUST\b", line):
            found.add(current)
    return found


def _cited() -> set[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))
    return set(re.findall(r"§(\d+(?:\.\d+)*)", text))


def test_every_must_section_is_cited_by_a_test() -> None:
    sections = _sections_with_musts()
    assert len(sections) > 30, "the MUST scan found too little; did the document change shape?"
    cited = _cited()

    def covered(section: str) -> bool:
        # A sub-rule (§13.6.1) is covered by a citation of itself or of its section (§13.6).
        parts = section.split(".")
        return any(".".join(parts[:n]) in cited for n in range(len(parts), 1, -1)) or (
            len(parts) == 1 and section in cited
        )

    missing = sorted(
        (s for s in sections if not covered(s)), key=lambda s: [int(p) for p in s.split(".")]
    )
    assert not missing, f"PROTOCOL sections with a MUST but no citing test: {missing}"
