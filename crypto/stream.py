"""Attachment chunks: the STREAM construction over ChaCha20-Poly1305 (docs/PROTOCOL.md §13).

Theory of operation (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption
and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015):

    padded   = data || 0x80 || 0x00*          to padded_length(len(data)) bytes (Padmé, §2.2)
    piece_i  = padded[i*C : (i+1)*C]          C = chunk size (1 MiB), the last piece may be short
    nonce_i  = u88be(i) || final_flag         final_flag = 0x01 for the last piece, else 0x00
    aad_i    = tag || 0x00 || attachment_id || u64be(i) || final_flag
    chunk_i  = ChaCha20-Poly1305(key, nonce_i, piece_i, aad_i)

Rules:
* Every attachment has its own random 32-byte key (`new_attachment_key`), carried only inside
  the encrypted, signed report content with the manifest (§13.3).
* Because the index and the final flag are in the nonce and the AAD, and the attachment id in
  the AAD, a reader fails on a reordered, duplicated, dropped, appended or spliced chunk (a
  chunk from another attachment, or a non-final chunk presented as the last one).
* The padding covers the whole attachment, not one chunk, so the total ciphertext size (and
  the chunk count) reveal only the Padmé bucket of the plaintext length.  For large files the
  padding can span several trailing chunks.
* Streaming: the sealer holds one piece (C bytes) and the reader two chunks, whatever the
  file size.  The reader releases a chunk's plaintext only after that chunk verified, but a
  stream is complete only when the iterator finishes without error: a caller writes to a
  temporary place and keeps the result only then (a dropped final chunk is detected at the end).

What is not protected: the chunk count and total size (up to the Padmé bucket), and when and
how fast chunks are uploaded.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto.errors import VerificationFailed
from crypto.padding import padded_length
from crypto.suite import Purpose

__all__ = [
    "CHUNK_SIZE",
    "KEY_LENGTH",
    "Manifest",
    "ManifestHasher",
    "manifest_of",
    "new_attachment_key",
    "open_chunks",
    "seal_chunks",
    "sealed_size",
]

CHUNK_SIZE = 1024 * 1024
KEY_LENGTH = 32
ATTACHMENT_ID_LENGTH = 16
TAG_LENGTH = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 2**32


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...


def new_attachment_key() -> bytes:
    """A fresh random 32-byte attachment key."""
    return secrets.token_bytes(KEY_LENGTH)


def _check(key: bytes, attachment_id: bytes, chunk_size: int) -> ChaCha20Poly1305:
    if not isinstance(key, bytes) or len(key) != KEY_LENGTH:
        raise TypeError("an attachment key is 32 bytes")
    if not isinstance(attachment_id, bytes) or len(attachment_id) != ATTACHMENT_ID_LENGTH:
        raise TypeError("an attachment id is 16 bytes")
    if type(chunk_size) is not int or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError("chunk size out of range")
    return ChaCha20Poly1305(key)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _aad(attachment_id: bytes, index: int, final: bool) -> bytes:
    return (
        Purpose.ATTACHMENT_CHUNK.value
        + b"\x00"
        + attachment_id
        + struct.pack(">Q", index)
        + (b"\x01" if final else b"\x00")
    )


def sealed_size(plaintext_length: int, chunk_size: int = CHUNK_SIZE) -> tuple[int, int]:
    """(chunk count, total ciphertext bytes) of an attachment of ``plaintext_length`` bytes."""
    padded = padded_length(plaintext_length)
    count = -(-padded // chunk_size)
    return count, padded + count * TAG_LENGTH


def _blocks(source: _Reader | Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a binary reader or an iterable of byte strings into ``size``-byte blocks."""
    if hasattr(source, "read"):
        reader: _Reader = source  # type: ignore[assignment]
        while True:
            block = reader.read(size)
            if not isinstance(block, bytes):
                raise TypeError("the reader must return bytes")
            if not block:
                return
            while len(block) < size:  # short reads (pipes, sockets)
                more = reader.read(size - len(block))
                if not more:
                    break
                block += more
            yield block
            if len(block) < size:
                return
    else:
        buffer = bytearray()
        for piece in source:
            if not isinstance(piece, (bytes, bytearray, memoryview)):
                raise TypeError("the source must yield bytes")
            buffer += piece
            while len(buffer) >= size:
                yield bytes(buffer[:size])
                del buffer[:size]
        if buffer:
            yield bytes(buffer)


def seal_chunks(
    key: bytes,
    attachment_id: bytes,
    source: _Reader | Iterable[bytes],
    *,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Seal an attachment chunk by chunk (docs/PROTOCOL.md §13).

    Args:
        key: the attachment's 32-byte key (`new_attachment_key`).
        attachment_id: its 16-byte random id.
        source: a binary reader (``read(n)``) or an iterable of byte strings of any sizes.
        chunk_size: plaintext bytes per chunk (1 MiB in the protocol; smaller in tests).

    Yields:
        The chunk ciphertexts in order: all but the last are ``chunk_size + 16`` bytes.
    """
    return _seal(_check(key, attachment_id, chunk_size), attachment_id, source, chunk_size)


def _seal(
    aead: ChaCha20Poly1305,
    attachment_id: bytes,
    source: _Reader | Iterable[bytes],
    chunk_size: int,
) -> Iterator[bytes]:
    index = 0
    total = 0
    held: bytes | None = None

    def seal(piece: bytes, final: bool) -> bytes:
        if index >= MAX_CHUNKS:
            raise ValueError("attachment too large")
        return aead.encrypt(_nonce(index, final), piece, _aad(attachment_id, index, final))

    for block in _blocks(source, chunk_size):
        if held is not None:
            yield seal(held, False)
            index += 1
        held = block
        total += len(block)

    # The tail: the last data block, the 0x80 marker, then zeros up to the Padmé bucket.
    buffer = bytearray(held or b"")
    buffer.append(0x80)
    zeros = padded_length(total) - total - 1
    while True:
        take = min(zeros, max(0, chunk_size - len(buffer)))
        buffer += bytes(take)
        zeros -= take
        piece = bytes(buffer[:chunk_size])
        del buffer[:chunk_size]
        final = zeros == 0 and not buffer
        yield seal(piece, final)
        index += 1
        if final:
            return


def open_chunks(
    key: bytes,
    attachment_id: bytes,
    chunks: Iterable[bytes],
    *,
    chunk_size: int = CHUNK_SIZE,
    expected: Manifest | None = None,
) -> Iterator[bytes]:
    """Verify and decrypt an attachment's chunks in order, yielding plaintext as it verifies.

    The output is complete and authentic only if the iterator ends without raising.

    Args:
        key, attachment_id, chunk_size: as given to `seal_chunks`.
        chunks: the chunk ciphertexts, in order, one per item.
        expected: the manifest from the report; if given, count, size and hash must match.

    Raises:
        VerificationFailed: a chunk fails to open, a chunk is missing, reordered, duplicated,
            appended, spliced from another attachment, or the padding is wrong.
    """
    aead = _check(key, attachment_id, chunk_size)
    if expected is not None and not isinstance(expected, Manifest):
        raise TypeError("expected must be a Manifest")
    return _open(aead, attachment_id, chunks, chunk_size, expected)


def _open(
    aead: ChaCha20Poly1305,
    attachment_id: bytes,
    chunks: Iterable[bytes],
    chunk_size: int,
    expected: Manifest | None,
) -> Iterator[bytes]:
    if expected is not None and expected.chunk_size != chunk_size:
        raise VerificationFailed()
    hasher = ManifestHasher(chunk_size)
    held_zeros = -1  # >= 0: a possible padding marker is held back, followed by that many zeros
    plaintext_total = 0
    iterator = iter(chunks)
    current = next(iterator, None)
    if current is None:
        raise VerificationFailed()
    index = 0
    while current is not None:
        if not isinstance(current, bytes):
            raise TypeError("chunks must be bytes")
        following = next(iterator, None)
        final = following is None
        full = chunk_size + TAG_LENGTH
        if (
            len(current) > full
            or len(current) <= TAG_LENGTH
            or (not final and len(current) != full)
        ):
            raise VerificationFailed()
        if index >= MAX_CHUNKS:
            raise VerificationFailed()
        try:
            piece = aead.decrypt(_nonce(index, final), current, _aad(attachment_id, index, final))
        except InvalidTag as exc:
            raise VerificationFailed() from exc
        hasher.update(current)
        plaintext_total += len(piece)
        data = piece.rstrip(b"\x00")
        trailing = len(piece) - len(data)
        if not data:
            if held_zeros >= 0:
                held_zeros += trailing
            else:
                yield piece
        else:
            if held_zeros >= 0:
                yield from _marker_and_zeros(held_zeros, chunk_size)
            if data[-1] == 0x80:
                if len(data) > 1:
                    yield data[:-1]
                held_zeros = trailing
            else:
                yield piece
                held_zeros = -1
        current = following
        index += 1
    # The padding must be exactly what a sealer produces: a marker, then zeros to the bucket.
    if held_zeros < 0 or padded_length(plaintext_total - held_zeros - 1) != plaintext_total:
        raise VerificationFailed()
    if expected is not None and hasher.finish() != expected:
        raise VerificationFailed()


def _marker_and_zeros(zeros: int, chunk_size: int) -> Iterator[bytes]:
    """A held-back 0x80 and its zeros turned out to be data: release them in bounded pieces."""
    first = min(zeros, chunk_size - 1)
    yield b"\x80" + bytes(first)
    zeros -= first
    while zeros:
        step = min(zeros, chunk_size)
        yield bytes(step)
        zeros -= step


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a report records about a sealed attachment (docs/PROTOCOL.md §13.3).

    ``total_size`` is the sum of the chunk ciphertext lengths and ``sha256`` the SHA-256 of
    their concatenation, so an uploader, the server and a downloader can check completeness
    without the key.
    """

    chunk_size: int
    chunk_count: int
    total_size: int
    sha256: bytes


class ManifestHasher:
    """Builds a `Manifest` while chunks stream past (nothing is retained)."""

    __slots__ = ("_chunk_size", "_count", "_hash", "_total")

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self._chunk_size = chunk_size
        self._count = 0
        self._total = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self._count += 1
        self._total += len(chunk)
        self._hash.update(chunk)

    def finish(self) -> Manifest:
        return Manifest(self._chunk_size, self._count, self._total, self._hash.digest())


def manifest_of(chunks: Iterable[bytes], *, chunk_size: int = CHUNK_SIZE) -> Manifest:
    """The manifest of a sequence of chunk ciphertexts."""
    hasher = ManifestHasher(chunk_size)
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.finish()
