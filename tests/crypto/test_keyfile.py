"""Local key files: Argon2id + ChaCha20-Poly1305 under a passphrase (PROTOCOL §12).

Every unwrap at the default parameters costs one Argon2id derivation (~150 ms here), so the
tamper cases are chosen one per field rather than exhaustively.
"""

from __future__ import annotations

import cbor2
import pytest

import crypto.keyfile as keyfile_module
from crypto import DEFAULT_KDF, KdfParams, VerificationFailed, unwrap_keyfile, wrap_keyfile
from crypto.encoding import encode
from crypto.keyfile import MAX_KDF

SECRET = bytes(range(96))
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def blob() -> bytes:
    return wrap_keyfile(SECRET, PASSPHRASE)


def _fields(blob: bytes) -> list:
    return cbor2.loads(blob)


def _rebuild(fields: list) -> bytes:
    return encode(fields)


def test_keyfile_round_trips(blob: bytes) -> None:
    """PROTOCOL §12: the secret comes back under the right passphrase."""
    assert unwrap_keyfile(blob, PASSPHRASE) == SECRET


def test_keyfile_layout_and_default_parameters(blob: bytes) -> None:
    """PROTOCOL §12.1: [1, "keyfile", params, salt16, nonce12, ct]; default m=64 MiB, t=3, p=4."""
    version, kind, params, salt, nonce, ciphertext = _fields(blob)
    assert (version, kind) == (1, "keyfile")
    assert params == {"m": 65536, "t": 3, "p": 4}
    assert DEFAULT_KDF == KdfParams(memory_cost=65536, iterations=3, lanes=4)
    assert len(salt) == 16 and len(nonce) == 12
    assert len(ciphertext) == len(SECRET) + 16
    assert SECRET not in blob


def test_keyfile_wraps_are_randomised() -> None:
    """PROTOCOL §12: salt and nonce are fresh per wrap, so two files of one secret differ."""
    a = _fields(wrap_keyfile(SECRET, PASSPHRASE))
    b = _fields(wrap_keyfile(SECRET, PASSPHRASE))
    assert a[3] != b[3] and a[4] != b[4] and a[5] != b[5]


def test_keyfile_wrong_passphrase_fails(blob: bytes) -> None:
    """PROTOCOL §12.2: a wrong passphrase fails with the opaque VerificationFailed."""
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(blob, PASSPHRASE + b"!")
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(blob, b"")


@pytest.mark.parametrize(
    ("index", "mutate"),
    [
        (3, lambda salt: bytes([salt[0] ^ 1]) + salt[1:]),
        (4, lambda nonce: nonce[:-1] + bytes([nonce[-1] ^ 0x80])),
        (5, lambda ct: bytes([ct[0] ^ 1]) + ct[1:]),
        (5, lambda ct: ct[:-1] + bytes([ct[-1] ^ 1])),
        (5, lambda ct: ct[:-1]),
        (5, lambda ct: ct + b"\x00"),
    ],
    ids=["salt-bit", "nonce-bit", "ciphertext-first-bit", "tag-bit", "truncated", "extended"],
)
def test_keyfile_tampered_field_fails(blob: bytes, index: int, mutate) -> None:
    """PROTOCOL §12.2: changing salt, nonce, ciphertext or tag fails like a wrong passphrase."""
    fields = _fields(blob)
    fields[index] = mutate(fields[index])
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(_rebuild(fields), PASSPHRASE)


def test_keyfile_stronger_parameters_swapped_in_fail(blob: bytes) -> None:
    """PROTOCOL §12: params are bound as AAD, so even an in-range change (t=4) fails."""
    fields = _fields(blob)
    fields[2] = {"m": 65536, "t": 4, "p": 4}
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(_rebuild(fields), PASSPHRASE)


def test_keyfile_salt_grafted_from_another_file_fails(blob: bytes) -> None:
    """PROTOCOL §12: the salt is bound as AAD; another file's salt does not open this one."""
    other = _fields(wrap_keyfile(SECRET, PASSPHRASE))
    fields = _fields(blob)
    fields[3] = other[3]
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(_rebuild(fields), PASSPHRASE)


@pytest.mark.parametrize(
    "params",
    [
        {"m": 65535, "t": 3, "p": 4},
        {"m": 65536, "t": 2, "p": 4},
        {"m": 65536, "t": 3, "p": 3},
        {"m": 8, "t": 1, "p": 1},
        {"m": 1024 * 1024 + 1, "t": 3, "p": 4},
        {"m": 65536, "t": 11, "p": 4},
        {"m": 65536, "t": 3, "p": 17},
        {"m": 65536, "t": 3},
        {"m": 65536, "t": 3, "p": 4, "x": 0},
        {"m": 65536, "t": 3, "p": -4},
        {"m": 65536, "t": 3, "p": "4"},
        [65536, 3, 4],
    ],
)
def test_keyfile_reader_refuses_parameters_outside_range_before_deriving(
    blob: bytes, params, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROTOCOL §12.1: below the floor (downgrade) or above the cap (DoS) -> refused, no KDF run."""
    calls: list[object] = []
    real = keyfile_module._derive
    monkeypatch.setattr(keyfile_module, "_derive", lambda *a: calls.append(a) or real(*a))
    fields = _fields(blob)
    fields[2] = params
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(_rebuild(fields), PASSPHRASE)
    assert calls == []


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_cost=32768, iterations=3, lanes=4),
        KdfParams(memory_cost=65536, iterations=1, lanes=4),
        KdfParams(memory_cost=65536, iterations=3, lanes=1),
        KdfParams(memory_cost=2 * 1024 * 1024, iterations=3, lanes=4),
        KdfParams(memory_cost=65536, iterations=3, lanes=32),
    ],
)
def test_keyfile_writer_refuses_parameters_outside_range(params: KdfParams) -> None:
    """PROTOCOL §12.1: a writer cannot produce a file a reader would refuse."""
    with pytest.raises(ValueError):
        wrap_keyfile(SECRET, PASSPHRASE, params=params)


def test_keyfile_cap_is_one_gib_t10_p16() -> None:
    """PROTOCOL §12.1: the reader's ceiling is m = 1 GiB, t = 10, p = 16."""
    assert MAX_KDF == KdfParams(memory_cost=1024 * 1024, iterations=10, lanes=16)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: [2, *f[1:]],
        lambda f: [f[0], "roster", *f[2:]],
        lambda f: f[:5],
        lambda f: [*f, b""],
        lambda f: [*f[:3], f[3][:15], *f[4:]],
        lambda f: [*f[:4], f[4] + b"\x00", f[5]],
        lambda f: [*f[:5], f[5][:15]],
        lambda f: [*f[:5], "text"],
    ],
    ids=["version", "kind", "short", "long", "salt15", "nonce13", "ct-below-tag", "ct-text"],
)
def test_keyfile_malformed_structure_fails(blob: bytes, mutate) -> None:
    """PROTOCOL §12.2: any structural damage fails with VerificationFailed."""
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(_rebuild(mutate(_fields(blob))), PASSPHRASE)


@pytest.mark.parametrize("cut", [0, 1, 5, 20])
def test_keyfile_truncated_bytes_fail(blob: bytes, cut: int) -> None:
    """PROTOCOL §12.2: truncated bytes (not valid CBOR) fail with VerificationFailed."""
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(blob[: len(blob) - 1 - cut], PASSPHRASE)


def test_keyfile_non_canonical_encoding_fails(blob: bytes) -> None:
    """PROTOCOL §2.1, §12: a non-canonical re-encoding of the same fields is refused."""
    fields = _fields(blob)
    # Same values, but the params map with its keys in insertion (unsorted) order.
    loose = cbor2.dumps([fields[0], fields[1], {"t": 3, "p": 4, "m": 65536}, *fields[3:]])
    assert loose != blob
    with pytest.raises(VerificationFailed):
        unwrap_keyfile(loose, PASSPHRASE)


def test_keyfile_wrong_types_are_type_errors(blob: bytes) -> None:
    """Wrong argument types are TypeError, not VerificationFailed."""
    with pytest.raises(TypeError):
        wrap_keyfile("secret", PASSPHRASE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wrap_keyfile(SECRET, "passphrase")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wrap_keyfile(SECRET, PASSPHRASE, salt=b"short")
    with pytest.raises(TypeError):
        wrap_keyfile(SECRET, PASSPHRASE, nonce=bytes(8))
    with pytest.raises(TypeError):
        unwrap_keyfile(blob, "passphrase")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        unwrap_keyfile("blob", PASSPHRASE)  # type: ignore[arg-type]
