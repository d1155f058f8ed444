"""Evidence bundles verify offline, and every alteration is refused with a message naming it.

PROTOCOL §22, docs/EVIDENCE.md §4.  The bundles are built in memory from a small organisation
(tests/evidence/factory.py): one coordinator, one field device, report A with three revisions
and a photo, and report B, which a bundle of report A must not reveal.  The adversary holds the
bundle: it flips bytes, removes a revision, adds one from another report, discloses a wrong
key, re-signs with a key the roster does not make a coordinator, or swaps the photo.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from crypto import ChainKey, SigningKey, encoding
from sync.evidence import EvidenceRefused, claimed, proven, verify_bundle
from sync.evidence.bundle import MAGIC
from tests.evidence.factory import (
    ORG,
    PHOTO_SIZE,
    REPORT_A,
    REPORT_B,
    T0,
    _checkpoint,
    build_org,
    bundle_of,
    fixed,
    part,
    replaced,
    signed,
)

ORG_FIXTURE = build_org()


def _tamper(data: bytes, change: Any) -> bytes:
    """Change the decoded contents (not the signed manifest) and re-encode the bundle."""
    outer = encoding.decode(data)
    contents = encoding.decode(outer[3])
    change(contents)
    outer[3] = encoding.encode(contents)
    return encoding.encode(outer)


def _refused(data: bytes) -> str:
    with pytest.raises(EvidenceRefused) as caught:
        verify_bundle(data)
    return str(caught.value)


def test_a_bundle_verifies_offline_with_only_the_keys_its_roster_proves() -> None:
    """PROTOCOL §22.3: signatures, roster membership, bodies under the disclosed keys, the
    photo's hash, the log proofs and the manifest; the merged state is the report's."""
    org = ORG_FIXTURE
    verified = verify_bundle(signed(org, bundle_of(org)))
    assert verified.reports == (REPORT_A,)
    assert [r.seq for r in verified.history(REPORT_A)] == [2, 4, 2]
    assert [r.logged.server_seq for r in verified.history(REPORT_A) if r.logged] == [2, 4, 6]
    assert [r.logged.issued_at for r in verified.history(REPORT_A) if r.logged] == [
        T0 + 100,
        T0 + 200,
        T0 + 300,
    ]
    photo = next(iter(verified.attachments.values()))
    assert photo.included and photo.manifest.size == PHOTO_SIZE
    state = verified.states[REPORT_A]
    assert {f.name: f.values for f in state.fields} == {
        "place": ("Central market",),
        "victims": ("3",),
    }
    assert verified.exporter == org.coordinator.verify_key.key_id
    assert verified.members[org.field_device.verify_key.key_id].listed_from == 2


def test_what_is_only_claimed_is_said_apart_from_what_is_proven() -> None:
    """PROTOCOL §22.4: device clocks, the exporter's clock and labels, and the key commitment
    are claims; the proven lines name none of them as proven."""
    org = ORG_FIXTURE
    labels = {org.field_device.verify_key.key_id: "monitor phone"}
    verified = verify_bundle(signed(org, bundle_of(org, labels=labels)))
    claims = " ".join(claimed(verified))
    for claim in ("device clocks", "export time", "server clocks", "key commitment", "labels"):
        assert claim in claims
    assert "MK(n-c)" in claims and "holds no chain key" in claims
    assert not any("clock" in line for line in proven(verified))
    assert verified.members[org.field_device.verify_key.key_id].label == "monitor phone"


def test_flipping_any_byte_of_a_bundle_fails_verification() -> None:
    """Every byte is covered: by canonical CBOR, a signature, an AEAD tag or a signed hash.
    Systematically over a small bundle (one revision, no photo file): each flip is refused
    with `EvidenceRefused`, never accepted and never another exception."""
    org = ORG_FIXTURE
    data = signed(org, bundle_of(org, ("a1",), photo=False, summary="s"))
    messages = set()
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        try:
            verify_bundle(bytes(flipped))
        except EvidenceRefused as exc:
            messages.add(str(exc).split(":")[0][:40])
        else:
            pytest.fail(f"a bundle with byte {i} flipped verified")
    assert len(messages) > 8  # the failures are told apart, not one generic refusal


def test_a_removed_revision_is_named() -> None:
    org = ORG_FIXTURE
    data = signed(org, bundle_of(org))
    removed = org.envelopes["a2"].id

    def drop(contents: dict[str, Any]) -> None:
        contents["e"] = [e for e in contents["e"] if e[0] != org.envelopes["a2"].to_bytes()]

    message = _refused(_tamper(data, drop))
    assert f"revision {removed.hex()[:16]}, listed in the signed manifest, is not in" in message


def test_an_exporter_who_leaves_out_an_ancestor_is_caught_by_the_parent_links() -> None:
    """Even re-signed by the coordinator, a bundle cannot hide a revision its others build on."""
    org = ORG_FIXTURE
    message = _refused(signed(org, bundle_of(org, ("a1", "a3"))))
    assert "names parent" in message and "history is incomplete" in message


def test_a_revision_added_from_another_report_is_named() -> None:
    org = ORG_FIXTURE
    data = signed(org, bundle_of(org))
    other = part(org, "b1")

    def add(contents: dict[str, Any]) -> None:
        contents["e"] = sorted([*contents["e"], [other.envelope, other.content]])

    message = _refused(_tamper(data, add))
    assert "which the signed manifest does not list" in message
    assert f"report {REPORT_B.hex()[:16]}, not one of this bundle's" in message
    # The exporter itself cannot slip it in either: report B is not one the bundle names.
    resigned = dataclasses.replace(bundle_of(org), revisions=(*bundle_of(org).revisions, other))
    assert "not one of the bundle's" in _refused(signed(org, resigned))


def test_a_key_that_does_not_open_its_revision_is_refused() -> None:
    org = ORG_FIXTURE
    message = _refused(signed(org, replaced(org, "a2", message_key=org.keys["a1"])))
    assert "does not open under its disclosed message key" in message


def test_content_that_is_not_what_the_body_opens_to_is_refused() -> None:
    org = ORG_FIXTURE
    message = _refused(signed(org, replaced(org, "a2", content=org.contents["b1"])))
    assert "is not what its body opens to" in message


@pytest.mark.parametrize("who", ["field device", "stranger"])
def test_a_manifest_signed_by_anyone_but_an_active_coordinator_is_refused(who: str) -> None:
    org = ORG_FIXTURE
    key = org.field_device if who == "field device" else SigningKey(fixed("stranger"))
    message = _refused(signed(org, bundle_of(org), exporter=key))
    assert "not an active coordinator of roster version 2" in message


def test_a_checkpoint_not_signed_by_the_pinned_server_key_is_refused() -> None:
    org = dataclasses.replace(build_org(), server=SigningKey(fixed("another server")))
    org.checkpoints = [_checkpoint(org, T0 + 100)]
    message = _refused(signed(org, bundle_of(org)))
    assert "not signed by the server key the roster pins" in message


def test_a_swapped_photo_is_refused() -> None:
    org = ORG_FIXTURE
    bundle = bundle_of(org)
    swapped = {k: bytes(len(v)) for k, v in bundle.attachments.items()}
    message = _refused(signed(org, dataclasses.replace(bundle, attachments=swapped)))
    assert "'market.jpg'" in message and "does not match the size and SHA-256" in message


def test_a_bundle_without_the_photo_file_still_proves_its_hash() -> None:
    org = ORG_FIXTURE
    verified = verify_bundle(signed(org, bundle_of(org, photo=False)))
    (photo,) = verified.attachments.values()
    assert not photo.included
    assert photo.manifest.sha256 == hashlib.sha256(org.photo).digest()


def test_the_bundle_reveals_nothing_of_the_report_left_out_and_no_chain_key() -> None:
    """Report B's id, content, nonce and message key are nowhere in report A's bundle, and
    neither is any chain key of either device (CK_0 .. CK_8): only MK_(n-c) of A's revisions."""
    org = ORG_FIXTURE
    data = signed(org, bundle_of(org))
    secrets = [REPORT_B, org.contents["b1"], org.keys["b1"], fixed("nonce b1", 12)]
    for label in ("field chain key", "coordinator chain key"):
        chain = ChainKey(fixed(label))
        for _ in range(9):
            secrets.append(chain.raw)
            chain = chain.advance()[1]
    for secret in secrets:
        assert secret not in data
    assert all(org.keys[n] in data for n in ("a1", "a2", "a3"))


def test_other_formats_and_organisations_are_refused() -> None:
    org = ORG_FIXTURE
    data = signed(org, bundle_of(org))
    outer = encoding.decode(data)
    assert "not a Sealbox evidence bundle" in _refused(encoding.encode(["x", *outer[1:]]))
    assert "unsupported evidence bundle format 2" in _refused(
        encoding.encode([MAGIC, 2, *outer[2:]])
    )
    assert "not canonical CBOR" in _refused(b"\xa0" + data)
    assert "not canonical CBOR" in _refused(b"")
    assert ORG in data
