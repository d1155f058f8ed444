"""The evidence bundle vectors (tests/vectors/bundle_v1.json) against the code, PROTOCOL §22.

An independent verifier checks itself against the same file: each accepted bundle verifies with
the recorded facts (revisions, message keys, log positions, attachments) and its manifest body
and section hashes are the recorded bytes; each altered one is refused.  The bundles are also
rebuilt from tests/evidence/factory.py byte for byte, so a change to the format shows up here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crypto import Purpose, SignedDocument, encoding
from sync.evidence import EvidenceRefused, section_hash, verify_bundle

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
_FILE = json.loads((VECTORS / "bundle_v1.json").read_text(encoding="utf-8"))
ACCEPTED = [v for v in _FILE["vectors"] if "expected" in v]
REFUSED = [v for v in _FILE["vectors"] if "error" in v]


@pytest.mark.parametrize("vector", ACCEPTED, ids=[v["name"] for v in ACCEPTED])
def test_accepted_bundles_verify_to_the_recorded_facts(vector: dict) -> None:
    """PROTOCOL §22: the manifest body and section hashes are the recorded bytes, and the
    verifier finds the recorded revisions, keys, log positions and attachments."""
    data = bytes.fromhex(vector["bundle"])
    outer = encoding.decode(data)
    manifest = SignedDocument.parse(outer[2], Purpose.EVIDENCE_SIGNATURE)
    assert manifest.body.hex() == vector["manifest_body"]
    contents = encoding.decode(outer[3])
    hashes = {k: section_hash(k, contents[k]).hex() for k in sorted(contents)}
    assert hashes == vector["section_hashes"]
    assert encoding.decode(manifest.body)["h"] == {
        k: bytes.fromhex(v) for k, v in vector["section_hashes"].items()
    }
    v = verify_bundle(data)
    expected = vector["expected"]
    assert [r.hex() for r in v.reports] == expected["reports"]
    assert v.exporter.hex() == expected["exporter"]
    assert v.fingerprint.hex() == expected["fingerprint"]
    revisions = [v.revisions[bytes.fromhex(r["id"])] for r in expected["revisions"]]
    for got, want in zip(revisions, expected["revisions"], strict=True):
        assert (got.seq, got.key_seq, got.device.hex()) == (
            want["seq"],
            want["key_seq"],
            want["device"],
        )
        assert v.message_keys[got.id].hex() == want["message_key"]
        assert got.logged is not None
        assert (got.logged.server_seq, got.logged.size, got.logged.issued_at) == (
            want["server_seq"],
            want["checkpoint_size"],
            want["stored_by"],
        )
    assert [(i.hex(), a.manifest.sha256.hex(), a.included) for i, a in v.attachments.items()] == [
        (a["id"], a["sha256"], a["included"]) for a in expected["attachments"]
    ]


@pytest.mark.parametrize("vector", REFUSED, ids=[v["name"] for v in REFUSED])
def test_altered_bundles_are_refused_with_the_recorded_message(vector: dict) -> None:
    with pytest.raises(EvidenceRefused) as caught:
        verify_bundle(bytes.fromhex(vector["bundle"]))
    assert str(caught.value) == vector["error"]


def test_the_vectors_are_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    """Regenerating from the factory's fixed inputs gives the committed file."""
    root = Path(__file__).resolve().parents[2]
    script = root / "tests" / "vectors" / "generate_bundle.py"
    code = (
        "import runpy, sys, generate;"
        f" generate.HERE = __import__('pathlib').Path({str(tmp_path)!r});"
        f" sys.argv = [{str(script)!r}];"
        f" runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=root / "tests" / "vectors",
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "bundle_v1.json").read_text() == (VECTORS / "bundle_v1.json").read_text()
