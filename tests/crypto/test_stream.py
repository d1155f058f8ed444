"""Attachment chunks (STREAM over ChaCha20-Poly1305) under attack (PROTOCOL §13).

Tests use small chunk sizes so that multi-chunk attachments stay tiny; the construction is
the same at 1 MiB.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import VerificationFailed
from crypto.padding import padded_length, padme
from crypto.stream import (
    CHUNK_SIZE,
    Manifest,
    ManifestHasher,
    manifest_of,
    new_attachment_key,
    open_chunks,
    seal_chunks,
    sealed_size,
)

KEY = bytes([1]) * 32
ATTACHMENT = bytes([2]) * 16
OTHER_ATTACHMENT = bytes([3]) * 16
C = 64


def seal(
    data: bytes, *, key: bytes = KEY, attachment: bytes = ATTACHMENT, chunk_size: int = C
) -> list[bytes]:
    return list(seal_chunks(key, attachment, [data], chunk_size=chunk_size))


def open_all(
    chunks: list[bytes], *, attachment: bytes = ATTACHMENT, chunk_size: int = C, **kw
) -> bytes:
    return b"".join(open_chunks(KEY, attachment, chunks, chunk_size=chunk_size, **kw))


DATA = bytes(range(256)) * 3  # 768 bytes, padded to 800: 13 chunks of 64
SEALED = seal(DATA)


# --- round trips and sizes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, C - 1, C, C + 1, 2 * C, 5 * C + 7, 300],
    ids=[
        "empty",
        "one-byte",
        "chunk-1",
        "exactly-one-chunk",
        "chunk+1",
        "two-chunks",
        "multi",
        "300",
    ],
)
def test_round_trip_at_boundary_sizes(size: int) -> None:
    """PROTOCOL §13: empty, 1 byte, one chunk, chunk + 1 and multi-chunk attachments round-trip."""
    data = bytes((7 * i) % 251 for i in range(size))
    chunks = seal(data)
    assert open_all(chunks) == data
    assert all(len(c) == C + 16 for c in chunks[:-1]) and 16 < len(chunks[-1]) <= C + 16


@given(
    data=st.binary(max_size=2000)
    | st.builds(lambda d, n: d + b"\x80" + bytes(n), st.binary(max_size=300), st.integers(0, 400))
    | st.builds(lambda d, n: d + bytes(n), st.binary(max_size=300), st.integers(0, 400)),
    chunk_size=st.integers(1, 300),
)
def test_round_trip_any_size_and_content(data: bytes, chunk_size: int) -> None:
    """PROTOCOL §13: any data (including tails that look like padding) round-trips exactly."""
    chunks = seal(data, chunk_size=chunk_size)
    assert open_all(chunks, chunk_size=chunk_size) == data


@given(size=st.integers(0, 20_000), chunk_size=st.sampled_from([16, 64, 1000, 4096]))
def test_total_size_reveals_only_padme_bucket(size: int, chunk_size: int) -> None:
    """PROTOCOL §13.1: the padded plaintext total is a Padmé bucket over the whole attachment,
    so chunk count and total ciphertext size depend only on that bucket."""
    count, total = sealed_size(size, chunk_size)
    padded = padded_length(size)
    assert padme(padded) == padded and padded >= 256
    assert count == -(-padded // chunk_size) and total == padded + 16 * count
    if size <= 3000:
        chunks = seal(bytes(size), chunk_size=chunk_size)
        assert (len(chunks), sum(map(len, chunks))) == (count, total)


def test_sizes_within_a_bucket_are_indistinguishable() -> None:
    """PROTOCOL §13.1: two different lengths in one bucket give identical chunk layouts."""
    a, b = 1000, 1010
    assert padded_length(a) == padded_length(b)
    assert [len(c) for c in seal(bytes(a))] == [len(c) for c in seal(bytes(b))]


def test_default_chunk_size_is_one_mib() -> None:
    """PROTOCOL §13: chunks are 1 MiB."""
    assert CHUNK_SIZE == 1024 * 1024
    data = bytes(CHUNK_SIZE + 1)
    chunks = list(seal_chunks(KEY, ATTACHMENT, io.BytesIO(data)))
    assert len(chunks[0]) == CHUNK_SIZE + 16
    assert b"".join(open_chunks(KEY, ATTACHMENT, chunks)) == data


@pytest.mark.parametrize("piece", [1, 7, 64, 100, 10_000])
def test_source_may_be_a_reader_or_uneven_pieces(piece: int) -> None:
    """PROTOCOL §13: the chunking does not depend on how the source delivers bytes."""
    from_pieces = list(
        seal_chunks(
            KEY, ATTACHMENT, [DATA[i : i + piece] for i in range(0, len(DATA), piece)], chunk_size=C
        )
    )
    from_reader = list(seal_chunks(KEY, ATTACHMENT, io.BytesIO(DATA), chunk_size=C))
    assert len(from_pieces) == len(from_reader) == len(SEALED)
    assert open_all(from_pieces) == open_all(from_reader) == DATA


class ShortReader:
    """A reader that returns at most 5 bytes per call (like a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._data.read(min(size, 5))


def test_short_reads_are_reassembled() -> None:
    """PROTOCOL §13: short reads do not produce short (distinguishable) chunks."""
    chunks = list(seal_chunks(KEY, ATTACHMENT, ShortReader(DATA), chunk_size=C))
    assert [len(c) for c in chunks] == [len(c) for c in SEALED]
    assert open_all(chunks) == DATA


def test_key_is_random_per_attachment_and_ciphertexts_differ() -> None:
    """PROTOCOL §13: each attachment has its own random key; same data, different chunks."""
    k1, k2 = new_attachment_key(), new_attachment_key()
    assert len(k1) == 32 and k1 != k2
    assert list(seal_chunks(k1, ATTACHMENT, [DATA], chunk_size=C)) != list(
        seal_chunks(k2, ATTACHMENT, [DATA], chunk_size=C)
    )


# --- streaming ---------------------------------------------------------------------------------


def test_sealing_streams_without_reading_ahead() -> None:
    """PROTOCOL §13: the sealer holds at most one chunk of input beyond what it emitted."""
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield bytes([5]) * C

    chunks = seal_chunks(KEY, ATTACHMENT, source(), chunk_size=C)
    for emitted in range(1, 50):
        next(chunks)
        assert pulled <= emitted + 1


def test_opening_streams_without_reading_ahead() -> None:
    """PROTOCOL §13: the reader looks at most one chunk ahead (to know which one is final)."""
    sealed = list(seal_chunks(KEY, ATTACHMENT, [bytes([5]) * C * 100], chunk_size=C))
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for chunk in sealed:
            pulled += 1
            yield chunk

    plaintext = open_chunks(KEY, ATTACHMENT, source(), chunk_size=C)
    for released in range(1, 50):
        next(plaintext)
        assert pulled <= released + 1


# --- attacks -----------------------------------------------------------------------------------


def _attempt(chunks: list[bytes], **kw) -> bytes:
    """Open and return what was released before failing (for the no-partial-plaintext check)."""
    released = bytearray()
    with pytest.raises(VerificationFailed):
        for piece in open_chunks(KEY, kw.pop("attachment", ATTACHMENT), chunks, chunk_size=C, **kw):
            released += piece
    return bytes(released)


@given(data=st.data())
def test_bit_flip_in_any_chunk_fails_and_releases_nothing_of_it(data: st.DataObject) -> None:
    """PROTOCOL §13.2: a flipped bit fails; only chunks before it (verified) were released."""
    index = data.draw(st.integers(0, len(SEALED) - 1))
    bit = data.draw(st.integers(0, len(SEALED[index]) * 8 - 1))
    damaged = list(SEALED)
    raw = bytearray(damaged[index])
    raw[bit // 8] ^= 1 << (bit % 8)
    damaged[index] = bytes(raw)
    released = _attempt(damaged)
    assert DATA.startswith(released) and len(released) <= index * C


@given(data=st.data())
def test_reordered_chunks_fail(data: st.DataObject) -> None:
    """PROTOCOL §13.2: the index is in the nonce and AAD; swapping two chunks fails."""
    i = data.draw(st.integers(0, len(SEALED) - 2))
    j = data.draw(st.integers(i + 1, len(SEALED) - 1))
    swapped = list(SEALED)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    _attempt(swapped)


@given(data=st.data())
def test_duplicated_chunk_fails(data: st.DataObject) -> None:
    """PROTOCOL §13.2: replaying a chunk at another position fails."""
    i = data.draw(st.integers(0, len(SEALED) - 1))
    at = data.draw(st.integers(0, len(SEALED)))
    _attempt([*SEALED[:at], SEALED[i], *SEALED[at:]])


@given(data=st.data())
def test_dropped_chunk_fails(data: st.DataObject) -> None:
    """PROTOCOL §13.2: removing any chunk (middle or last) fails."""
    i = data.draw(st.integers(0, len(SEALED) - 1))
    _attempt(SEALED[:i] + SEALED[i + 1 :])


def test_truncation_after_any_chunk_fails() -> None:
    """PROTOCOL §13.2: a stream cut after chunk k (k < last) fails: the final flag is missing."""
    for k in range(1, len(SEALED)):
        released = _attempt(SEALED[:k])
        assert len(released) <= k * C


def test_empty_stream_fails() -> None:
    """PROTOCOL §13.2: no chunks is not an (empty) attachment."""
    _attempt([])


def test_appended_chunk_fails() -> None:
    """PROTOCOL §13.2: anything after the final chunk fails (the final chunk is not final)."""
    other = seal(b"tail", attachment=ATTACHMENT)
    _attempt([*SEALED, other[0]])
    _attempt([*SEALED, SEALED[-1]])
    _attempt([*SEALED, bytes(C + 16)])


def test_spliced_chunk_from_another_attachment_fails() -> None:
    """PROTOCOL §13.2: the attachment id is in the AAD; a same-key chunk from another
    attachment at the same index fails."""
    other = seal(bytes(range(256)) * 3, attachment=OTHER_ATTACHMENT)
    assert len(other) == len(SEALED)
    for i in range(len(SEALED)):
        spliced = list(SEALED)
        spliced[i] = other[i]
        _attempt(spliced)
    _attempt(SEALED, attachment=OTHER_ATTACHMENT)


def test_chunk_from_another_key_fails() -> None:
    """PROTOCOL §13.2: a chunk sealed under another key fails."""
    other = seal(DATA, key=bytes([9]) * 32)
    _attempt([other[0], *SEALED[1:]])


@pytest.mark.parametrize("cut", [1, 15, C])
def test_truncated_or_short_chunk_fails(cut: int) -> None:
    """PROTOCOL §13.2: a non-final chunk must be exactly chunk size + tag; a cut chunk fails."""
    _attempt([SEALED[0][:-cut], *SEALED[1:]])
    _attempt([*SEALED[:-1], SEALED[-1][: max(0, len(SEALED[-1]) - cut)]])


def test_wrong_chunk_size_fails() -> None:
    """PROTOCOL §13: a reader with another chunk size does not accept the stream."""
    with pytest.raises(VerificationFailed):
        b"".join(open_chunks(KEY, ATTACHMENT, SEALED, chunk_size=C * 2))


def test_non_canonical_padding_fails() -> None:
    """PROTOCOL §13.1: even a key holder cannot make a stream whose padding is not the bucket:
    a sealer that skipped padding is refused."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from crypto.stream import _aad, _nonce

    aead = ChaCha20Poly1305(KEY)
    unpadded = aead.encrypt(_nonce(0, True), b"short\x80", _aad(ATTACHMENT, 0, True))
    _attempt([unpadded])
    no_marker = aead.encrypt(_nonce(0, True), bytes(10), _aad(ATTACHMENT, 0, True))
    _attempt([no_marker])


# --- manifest -----------------------------------------------------------------------------------


def test_manifest_counts_sizes_and_hashes_ciphertexts() -> None:
    """PROTOCOL §13.3: chunk count, total size, SHA-256 over the concatenated ciphertexts."""
    import hashlib

    manifest = manifest_of(SEALED, chunk_size=C)
    assert manifest == Manifest(
        C, len(SEALED), sum(map(len, SEALED)), hashlib.sha256(b"".join(SEALED)).digest()
    )
    assert (manifest.chunk_count, manifest.total_size) == sealed_size(len(DATA), C)
    hasher = ManifestHasher(C)
    for chunk in SEALED:
        hasher.update(chunk)
    assert hasher.finish() == manifest
    assert open_all(SEALED, expected=manifest) == DATA


def test_manifest_mismatch_fails() -> None:
    """PROTOCOL §13.3: a stream that does not match the signed manifest fails."""
    manifest = manifest_of(SEALED, chunk_size=C)
    for wrong in (
        Manifest(C, manifest.chunk_count + 1, manifest.total_size, manifest.sha256),
        Manifest(C, manifest.chunk_count, manifest.total_size + 1, manifest.sha256),
        Manifest(C, manifest.chunk_count, manifest.total_size, bytes(32)),
        Manifest(C * 2, manifest.chunk_count, manifest.total_size, manifest.sha256),
    ):
        _attempt(SEALED, expected=wrong)


def test_wrong_argument_types_fail_eagerly() -> None:
    """Wrong key or id lengths and types are TypeError, raised at the call, not at first use."""
    with pytest.raises(TypeError):
        seal_chunks(bytes(31), ATTACHMENT, [b""])
    with pytest.raises(TypeError):
        seal_chunks(KEY, bytes(8), [b""])
    with pytest.raises(TypeError):
        open_chunks("key", ATTACHMENT, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        seal_chunks(KEY, ATTACHMENT, [b""], chunk_size=0)
    with pytest.raises(TypeError):
        list(seal_chunks(KEY, ATTACHMENT, ["text"], chunk_size=C))  # type: ignore[list-item]
