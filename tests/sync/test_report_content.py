"""The report content format (PROTOCOL §14.1, §14.2): what a revision body may say."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import encoding
from sync.report import (
    DELETED,
    AttachmentManifest,
    ContentError,
    ReportContent,
    parse_field_assignments,
)

names = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20)
values = st.one_of(st.text(max_size=50), st.just(DELETED))


@given(
    st.integers(0, 2**40),
    st.dictionaries(names, values, min_size=1, max_size=5),
    st.lists(st.text(min_size=1, max_size=30), max_size=3),
    st.booleans(),
)
def test_content_round_trips_through_canonical_cbor(t, fields, notes, resolves) -> None:
    content = ReportContent(client_time=t, fields=fields, notes=tuple(notes), resolves=resolves)
    assert ReportContent.decode(content.encode()) == content


def test_deletion_marker_is_a_value_not_an_absence() -> None:
    # PROTOCOL §14.2 item 2, §14.4: null in "f" is the deletion marker.
    content = ReportContent(client_time=1, fields={"location": DELETED})
    raw = encoding.decode(content.encode())
    assert raw["f"] == {"location": None}
    assert ReportContent.decode(content.encode()).fields["location"] is DELETED


def test_attachment_manifest_round_trips() -> None:
    manifest = AttachmentManifest(bytes(16), "photo.jpg", 1234, bytes(32), "image/jpeg")
    content = ReportContent(client_time=5, attachments=(manifest,))
    assert ReportContent.decode(content.encode()).attachments == (manifest,)


def _raw(**override):
    raw = {"v": 1, "t": 1, "f": {"a": "b"}, "n": [], "a": [], "r": False}
    raw.update(override)
    return encoding.encode(raw)


@pytest.mark.parametrize(
    "data",
    [
        _raw(v=2),  # PROTOCOL §14.1 item 1: unknown version
        encoding.encode({"v": 1, "t": 1, "f": {"a": "b"}, "n": [], "a": [], "r": False, "z": 1}),
        _raw(f={"a": 3}),  # PROTOCOL §14.2 item 2: only text or null
        _raw(f={"": "x"}),  # PROTOCOL §14.2 item 1: empty name
        _raw(f={"a\nb": "x"}),  # PROTOCOL §14.2 item 1: control character
        _raw(f={"x" * 65: "x"}),  # PROTOCOL §14.2 item 1: too long
        _raw(t=-1),
        _raw(r=1),
        _raw(f={}),  # PROTOCOL §14.2 item 4: empty revision
        _raw(n=[1]),
        _raw(a=[{"i": b"x"}]),
        b"\xff",
    ],
)
def test_decode_refuses_content_outside_the_format(data: bytes) -> None:
    with pytest.raises(ContentError):
        ReportContent.decode(data)


def test_field_assignments_parse_values_and_deletions() -> None:
    assert parse_field_assignments(["place=Kharkiv", "note=a=b", "phone!"]) == {
        "place": "Kharkiv",
        "note": "a=b",
        "phone": DELETED,
    }
    with pytest.raises(ContentError):
        parse_field_assignments(["novalue"])
