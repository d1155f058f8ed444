"""docs/PROTOCOL.md (§10) lists every stable error code with the meaning the code gives."""

from __future__ import annotations

import re
from pathlib import Path

from sync.errors import ErrorCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _doc_text() -> str:
    return (DOCS / "PROTOCOL.md").read_text()


def test_every_error_code_is_documented_with_its_meaning() -> None:
    text = _doc_text()
    rows = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `([a-z_]+)` \| [0-9/]+ \| (.+?) \|$", text, re.M)
    }
    for code in ErrorCode:
        assert code.value in rows, f"{code.value} missing from the §10 table"
        assert rows[code.value] == code.meaning, code.value


def test_every_v1_route_is_documented(tmp_path: Path) -> None:
    from server.app import create_app
    from server.settings import Settings

    text = _doc_text()
    app = create_app(Settings(data_dir=tmp_path))
    # §7-§11 cover the core routes; attachments (§13) document their own.
    core = {"server", "organisations", "sync"}
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/v1"):
            for method, operation in operations.items():
                if not core & set(operation.get("tags", [])):
                    continue
                assert f"`{method.upper()} {path}" in text, f"{method.upper()} {path} undocumented"
