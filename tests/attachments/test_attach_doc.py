"""docs/PROTOCOL.md (§13.5) documents every attachment route and reason."""

from __future__ import annotations

from pathlib import Path

from sync.attachments import AttachmentReason

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def test_every_attachment_route_is_documented(tmp_path: Path) -> None:
    from attach_support import with_attachment_routes

    from server.app import create_app
    from server.settings import Settings

    text = DOC.read_text()
    app = with_attachment_routes(create_app(Settings(data_dir=tmp_path)))
    seen = 0
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if "attachments" in operation.get("tags", []):
                seen += 1
                assert f"`{method.upper()} {path}" in text, f"{method.upper()} {path}"
    assert seen == 6


def test_every_reason_is_documented() -> None:
    text = DOC.read_text()
    for reason in AttachmentReason:
        assert f"`{reason.value}`" in text, reason.value
