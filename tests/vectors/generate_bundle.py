"""Generate the evidence bundle vectors: bundle_v1.json (PROTOCOL §22, docs/EVIDENCE.md).

Run from the repository root:  .venv/bin/python tests/vectors/generate_bundle.py

The bundles come from the small organisation of tests/evidence/factory.py, whose every key,
nonce and chain key derives from a fixed label (the same `fixed` as generate.py), so re-running
rewrites an identical file.  Each accepted vector records the bundle, its manifest body and
section hashes, and what a verifier must find; each refused one a bundle and the start of the
message the reference verifier gives.  The tests never run this script
(tests/evidence/test_bundle_vectors.py compares the code against the committed file).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from generate import main, write  # noqa: E402

from crypto import SignedDocument, encoding  # noqa: E402
from crypto.suite import Purpose  # noqa: E402
from sync.evidence import EvidenceRefused, section_hash, verify_bundle  # noqa: E402
from tests.evidence.factory import build_org, bundle_of, part, replaced, signed  # noqa: E402

SECTION = "§3, §22"


def _expected(data: bytes) -> dict[str, Any]:
    v = verify_bundle(data)
    return {
        "org": v.org_id.hex(),
        "reports": [r.hex() for r in v.reports],
        "exporter": v.exporter.hex(),
        "exported_at": v.exported_at,
        "roster_version": v.roster_version,
        "fingerprint": v.fingerprint.hex(),
        "revisions": [
            {
                "id": r.id.hex(),
                "device": r.device.hex(),
                "seq": r.seq,
                "key_seq": r.key_seq,
                "message_key": v.message_keys[r.id].hex(),
                "client_time": r.content.client_time,
                "server_seq": r.logged.server_seq if r.logged else None,
                "checkpoint_size": r.logged.size if r.logged else None,
                "stored_by": r.logged.issued_at if r.logged else None,
            }
            for report in v.reports
            for r in v.history(report)
        ],
        "attachments": [
            {
                "id": i.hex(),
                "sha256": a.manifest.sha256.hex(),
                "size": a.manifest.size,
                "included": a.included,
            }
            for i, a in v.attachments.items()
        ],  # fmt: skip
    }


def _accepted(name: str, data: bytes) -> dict[str, Any]:
    outer = encoding.decode(data)
    manifest = SignedDocument.parse(outer[2], Purpose.EVIDENCE_SIGNATURE)
    contents = encoding.decode(outer[3])
    return {
        "name": name,
        "bundle": data.hex(),
        "manifest_body": manifest.body.hex(),
        "section_hashes": {k: section_hash(k, contents[k]).hex() for k in sorted(contents)},
        "expected": _expected(data),
    }


def _refused(name: str, data: bytes) -> dict[str, Any]:
    try:
        verify_bundle(data)
    except EvidenceRefused as exc:
        return {"name": name, "bundle": data.hex(), "error": str(exc)}
    raise AssertionError(f"{name}: verified")


def _with(outer: list[Any], contents: dict[str, Any]) -> bytes:
    """The bundle with other contents under the same signed manifest."""
    return encoding.encode([*outer[:3], encoding.encode(contents)])


def bundles() -> None:
    org = build_org()
    full = signed(org, bundle_of(org))
    outer = encoding.decode(full)
    contents = encoding.decode(outer[3])
    a2 = org.envelopes["a2"].to_bytes()
    removed = dict(contents, e=[e for e in contents["e"] if e[0] != a2])
    other = part(org, "b1")
    added = dict(contents, e=sorted([*contents["e"], [other.envelope, other.content]]))
    wrong_key = replaced(org, "a2", message_key=org.keys["a1"])
    vectors = [
        _accepted("report A: three revisions by two devices, a photo, three checkpoints", full),
        _accepted("the same without the photo's file (its signed hash stays)",
                  signed(org, bundle_of(org, photo=False))),  # fmt: skip
        _refused("a revision removed", _with(outer, removed)),
        _refused("a revision of report B added", _with(outer, added)),
        _refused("a wrong message key disclosed (re-signed)", signed(org, wrong_key)),
        _refused("signed by the field device",
                 signed(org, bundle_of(org), exporter=org.field_device)),
    ]  # fmt: skip
    write(
        "bundle_v1.json",
        "Evidence bundles of report A of tests/evidence/factory.py (one coordinator, one field "
        "device, roster versions 1-2; report B is left out): accepted bundles with their manifest "
        "body, section hashes and the facts a verifier finds, and altered bundles with the "
        "reference verifier's message",
        SECTION,
        vectors,
    )


GENERATORS = {"bundle": bundles}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], GENERATORS))
