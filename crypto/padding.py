"""Padmé padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted
Files and Communication with PURBs", PETS 2019).

A length L is rounded up so that only its top ~log2(log2(L)) bits remain free:
the overhead is at most 12 % and a padded length reveals O(log log L) bits.
Bodies are padded as ``content || 0x80 || 0x00*`` (ISO/IEC 7816-4) to
``padme(len(content) + 1)``, with a floor so tiny reports look alike.
"""

from __future__ import annotations

__all__ = ["MIN_PADDED_LENGTH", "pad", "padded_length", "padme", "unpad"]

MIN_PADDED_LENGTH = 256
"""Every padded body is at least this long, so a one-word edit and an empty
report are indistinguishable by size."""


def padme(length: int) -> int:
    """Return the Padmé bucket for ``length`` (>= length)."""
    if length < 0:
        raise ValueError("length must be non-negative")
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


def padded_length(content_length: int) -> int:
    """Length of ``pad(content)`` for a content of ``content_length`` bytes."""
    return max(MIN_PADDED_LENGTH, padme(content_length + 1))


def pad(content: bytes) -> bytes:
    """Pad ``content`` to its bucket with the 0x80 0x00... marker."""
    total = padded_length(len(content))
    return content + b"\x80" + bytes(total - len(content) - 1)


def unpad(padded: bytes) -> bytes:
    """Remove padding added by `pad`. Raises ValueError if the marker is absent.

    Only called on authenticated plaintext, so timing here reveals nothing an
    attacker could not already see (the padded length).
    """
    end = len(padded.rstrip(b"\x00"))
    if end == 0 or padded[end - 1] != 0x80:
        raise ValueError("bad padding")
    return padded[: end - 1]
