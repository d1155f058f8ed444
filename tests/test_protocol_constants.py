"""Every purpose tag and protocol constant the code uses is written down in docs/PROTOCOL.md.

An independent implementer builds a client from PROTOCOL.md and tests/vectors/ alone
(issue 11), so nothing the wire depends on may live only in the code. The tags, strings and
codes are collected from the code itself (the `Purpose` enum, every module-level or enum
byte/text constant of crypto/, sync/ and clients/ that looks like a protocol string, the
error codes, the push statuses, the wire models' fields, the envelope header and report
content keys): a new one without doc text fails here. Numbers cannot be found that way, so
the limits and lengths an implementer needs are listed below with the phrase that states
them, built from the code's value.

PROTOCOL §1.2 (the tag table), §2.1, §3, §4.1, §4.3, §6.3, §7.3, §8.2, §10, §14.1.
"""

from __future__ import annotations

import enum
import functools
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from crypto import SigningKey, encoding, sign_document
from crypto.suite import Purpose

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "PROTOCOL.md"
PACKAGES = ("crypto", "sync", "clients")
"""Where protocol constants live. server/ only uses them (and its module names like
``sealbox.signer`` are process-internal, not protocol)."""

PROTOCOL_PREFIXES = ("sealbox/", "sealbox-", "sbx", "https://sealbox.dev/", "application/")
"""A text or byte constant starting with one of these is a protocol string."""

MiB = 1024 * 1024
KiB = 1024


def _doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def _flat(text: str) -> str:
    """The document with every run of whitespace as one space (phrases wrap across lines)."""
    return re.sub(r"\s+", " ", text)


def _section(text: str, number: str) -> str:
    """The text of one section: from its heading or bullet to the next one of any level."""
    heading = re.compile(r"^(?:#+ |- \*\*|- )§(\d+(?:\.\d+)*)", re.M)
    starts = [(m.start(), m.group(1)) for m in heading.finditer(text)]
    for i, (start, found) in enumerate(starts):
        if found == number:
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            return text[start:end]
    raise AssertionError(f"PROTOCOL.md has no section §{number}")


def _mentions(text: str, value: str) -> bool:
    """Whether ``value`` occurs as a whole token (not inside a longer tag or word)."""
    return re.search(r"(?<![\w/.-])" + re.escape(value) + r"(?![\w/-])", text) is not None


def _modules() -> Iterator[ModuleType]:
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            yield importlib.import_module(info.name)


@functools.cache
def _protocol_strings() -> dict[str, set[str]]:
    """Protocol strings defined in the code -> where (``module.NAME``)."""
    found: dict[str, set[str]] = {}
    for module in _modules():
        for attr, value in vars(module).items():
            values: list[object] = []
            if isinstance(value, (bytes, str)):
                values = [value]
            elif (
                isinstance(value, type)
                and issubclass(value, enum.Enum)
                and value.__module__ == module.__name__
            ):
                values = [member.value for member in value]
            for raw in values:
                if not isinstance(raw, (bytes, str)):
                    continue
                text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
                if text.startswith(PROTOCOL_PREFIXES):
                    # A trailing separator byte is part of the construction, not of the tag.
                    found.setdefault(text.rstrip("\x00"), set()).add(f"{module.__name__}.{attr}")
    return found


# --- tags --------------------------------------------------------------------------------


def test_the_scan_finds_the_known_tags() -> None:
    """The scan itself works: it finds every `Purpose` tag and the RFC 9421 strings."""
    found = _protocol_strings()
    for purpose in Purpose:
        assert purpose.value.decode("ascii") in found, purpose
    for known in ("sealbox-v1", "sbx", "sbx1:", "https://sealbox.dev/problems/"):
        assert known in found, known


def test_every_purpose_tag_has_a_row_in_the_tag_table() -> None:
    """PROTOCOL §1.2: each `Purpose` tag has a row saying its construction and where it is used."""
    table = _section(_doc(), "1.2")
    for purpose in Purpose:
        tag = purpose.value.decode("ascii")
        rows = [line for line in table.splitlines() if line.strip().startswith(f"| `{tag}` |")]
        assert len(rows) == 1, f"{tag} ({purpose.name}) needs exactly one row in the §1.2 table"
        assert re.search(r"§\d", rows[0]), f"the §1.2 row of {tag} names no section"


@pytest.mark.parametrize("value", sorted(_protocol_strings()))
def test_every_protocol_string_in_the_code_is_in_the_doc(value: str) -> None:
    """PROTOCOL §1.2, §7.3, §10: a tag, label, prefix or media type the code defines."""
    where = ", ".join(sorted(_protocol_strings()[value]))
    assert _mentions(_doc(), value), f"{value!r} ({where}) is not written in PROTOCOL.md"


def test_signed_document_purposes_are_the_tag_suffixes_listed_in_section_3() -> None:
    """PROTOCOL §3: tag(purpose) = "sealbox/v1/sig/" || purpose, for every document purpose."""
    section = _section(_doc(), "3")
    key = SigningKey(bytes(32))
    documents = 0
    for purpose in Purpose:
        tag = purpose.value.decode("ascii")
        if not tag.startswith("sealbox/v1/sig/"):
            continue
        try:
            signed = sign_document(purpose, {}, key)
        except ValueError:  # not a document purpose: envelopes sign their id (§4)
            assert f'"{tag}"' in _section(_doc(), "4") or f"`{tag}`" in section, tag
            continue
        documents += 1
        name = encoding.decode(signed.to_bytes())[1]
        assert tag == "sealbox/v1/sig/" + name
        assert f'"{name}"' in section and f"`{tag}`" in section, name
    assert documents == 10  # roster, invite, invite-cancel, enrollment, receipt, checkpoint,
    # freshness, evidence, grant, rotation


# --- codes and vocabularies --------------------------------------------------------------


def test_every_error_code_has_a_row() -> None:
    """PROTOCOL §10: every `ErrorCode` value is a row of the table."""
    from sync.errors import ErrorCode

    text = _doc()
    for code in ErrorCode:
        assert re.search(rf"^\| `{code.value}` \|", text, re.M), code.value


def test_every_push_status_is_listed() -> None:
    """PROTOCOL §8.2: the `status` row names every `ItemStatus`."""
    from sync.messages import ItemStatus

    (row,) = [
        line for line in _section(_doc(), "8.2").splitlines() if line.startswith("| `status`")
    ]
    for status in ItemStatus:
        assert f"`{status.value}`" in row, status.value


def test_every_role_is_written() -> None:
    """PROTOCOL §5.1, §6.1: the role names."""
    from sync.roster import Role

    for role in Role:
        assert f'"{role.value}"' in _doc(), role.value


def test_every_wire_model_field_is_written() -> None:
    """PROTOCOL §7-§9, §19: every field of the wire models in sync/messages.py (and
    sync/grant_messages.py) is named."""
    import sync.grant_messages as grant_messages
    import sync.messages as messages

    text = _doc()
    for module in (messages, grant_messages):
        for model in vars(module).values():
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                continue
            if model.__module__ != module.__name__:
                continue
            for field in model.model_fields:
                assert _mentions(text, field), f"{model.__name__}.{field} is not in PROTOCOL.md"


def test_every_envelope_header_key_has_a_row() -> None:
    """PROTOCOL §4.1: every header key of both kinds is a row of the header table."""
    from crypto import envelope

    table = _section(_doc(), "4.1")
    for key in sorted(envelope._REV_KEYS | envelope._KEY_KEYS):
        assert f"| `{key}` |" in table, key


def test_every_report_content_key_has_a_row() -> None:
    """PROTOCOL §14.1: the content map's keys, all of them sent even when empty."""
    from sync.report import ReportContent

    table = _section(_doc(), "14.1")
    keys = ReportContent(client_time=0, notes=("x",)).to_cbor()
    assert set(keys) == {"v", "t", "f", "n", "a", "r"}
    for key in keys:
        assert f"| `{key}` |" in table, key
    # Empty notes and attachments are still sent (`"n": []`, `"a": []`).
    assert keys["a"] == [] and keys["f"] == {}
    assert '"n": []' in table and '"a": []' in table and '"f": {}' in table


# --- numbers -----------------------------------------------------------------------------


def _power_of_two(value: int) -> str:
    assert value & (value - 1) == 0, value
    return f"2^{value.bit_length() - 1}"


def _numbers() -> list[tuple[str, str]]:
    """(constant, the phrase of PROTOCOL.md that states it, built from the code's value)."""
    from crypto import chain, envelope, keyfile, keys, padding, signed, stream, suite
    from sync import cursor, invite, report, roster

    wrap = suite.HPKE_ENC_LENGTH + len(chain.ChainKey.generate().raw) + stream.TAG_LENGTH
    label = 12 + padding.padded_length(invite.MAX_LABEL_LENGTH) + stream.TAG_LENGTH
    assert padding.padded_length(invite.MAX_LABEL_LENGTH) == invite._LABEL_PAD
    assert envelope.MAX_BODY_LENGTH % MiB == 0 and signed.MAX_DOCUMENT_LENGTH % MiB == 0
    assert envelope.MAX_ENVELOPE_LENGTH - envelope.MAX_BODY_LENGTH == 8 * KiB
    return [
        ("PROTOCOL_VERSION", f"Sealbox protocol, version {suite.PROTOCOL_VERSION}"),
        ("SUITE_ID", f"| role | suite {suite.SUITE_ID} |"),
        ("HPKE_ENC_LENGTH", f"costs {suite.HPKE_ENC_LENGTH:,} bytes of encapsulation"),
        ("HPKE wrap length", f"**{wrap:,} bytes** per recipient"),
        ("HPKE wrap split", f"enc = wrap[:{suite.HPKE_ENC_LENGTH}]"),
        ("KEM_PUBLIC_KEY_LENGTH", f"its {keys.KEM_PUBLIC_KEY_LENGTH:,}-byte public key"),
        ("key id length", "public key)[:16]"),
        ("MIN_PADDED_LENGTH", f"max({padding.MIN_PADDED_LENGTH}, Padmé(len(content) + 1))"),
        ("MAX_LABEL_LENGTH", f"UTF-8 of at most {invite.MAX_LABEL_LENGTH} bytes"),
        ("sealed label length", f"12 + {invite._LABEL_PAD} + 16 = {label} bytes"),
        ("MAX_CHAIN_INDEX", f"refuse i > {_power_of_two(chain.MAX_CHAIN_INDEX)}"),
        ("MAX_DEPTH", f"nest at most {encoding.MAX_DEPTH} levels deep"),
        ("MAX_SEQ", f"1 ≤ n ≤ {_power_of_two(envelope.MAX_SEQ)}"),
        ("MAX_BODY_LENGTH", f"a body is at most {envelope.MAX_BODY_LENGTH // MiB} MiB"),
        (
            "MAX_ENVELOPE_LENGTH",
            f"an envelope at most {envelope.MAX_BODY_LENGTH // MiB} MiB + 8 KiB",
        ),
        (
            "MAX_PARENTS, MAX_RECIPIENTS",
            f"at most {envelope.MAX_PARENTS} parents and {envelope.MAX_RECIPIENTS} recipients",
        ),
        (
            "MAX_DOCUMENT_LENGTH",
            f"Document size is at most {signed.MAX_DOCUMENT_LENGTH // MiB} MiB",
        ),
        ("MAX_MEMBERS", f"at most {roster.MAX_MEMBERS:,}"),
        ("EPOCH_LENGTH", f"`epoch` is {cursor.EPOCH_LENGTH} random bytes"),
        ("CHUNK_SIZE", f"fixed-size chunks ({stream.CHUNK_SIZE // MiB} MiB)"),
        ("MAX_CHUNK_SIZE", f"1..{stream.MAX_CHUNK_SIZE // MiB} MiB"),
        ("SALT_LENGTH", f"salt = {keyfile.SALT_LENGTH} random bytes"),
        (
            "DEFAULT_KDF",
            f"m = {keyfile.DEFAULT_KDF.memory_cost:,} KiB, t = {keyfile.DEFAULT_KDF.iterations},"
            f" p = {keyfile.DEFAULT_KDF.lanes}",
        ),
        (
            "MAX_KDF",
            f"m = {keyfile.MAX_KDF.memory_cost // (KiB * KiB)} GiB,"  # memory_cost is in KiB
            f" t = {keyfile.MAX_KDF.iterations},"
            f" p = {keyfile.MAX_KDF.lanes}",
        ),
        ("MAX_FIELD_NAME", f"Field names are 1–{report.MAX_FIELD_NAME} characters"),
        (
            "MAX_FIELDS, MAX_NOTES, MAX_ATTACHMENTS",
            f"At most {report.MAX_FIELDS} fields, {report.MAX_NOTES} notes and"
            f" {report.MAX_ATTACHMENTS} attachments per revision",
        ),
        ("MAX_TEXT", f"at most {report.MAX_TEXT // KiB} KiB (UTF-8)"),
        ("CONTENT_VERSION", f"content format version, `{report.CONTENT_VERSION}`"),
    ]


@pytest.mark.parametrize(("constant", "phrase"), _numbers(), ids=[c for c, _ in _numbers()])
def test_every_protocol_number_is_stated(constant: str, phrase: str) -> None:
    """PROTOCOL §1-§14: the lengths and limits an implementer needs, with the code's values."""
    assert phrase in _flat(_doc()), f"{constant}: PROTOCOL.md does not say {phrase!r}"
