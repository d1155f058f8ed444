"""Feed cursors: ``base64url(canonical CBOR [epoch, server_seq])`` (PROTOCOL §9.2).

``epoch`` is 16 random bytes drawn when the server database was created.  A cursor
from another epoch, or one ahead of the server's newest sequence, means the server
was replaced or restored from a backup: the client must re-push what it holds and
re-pull from the start (docs/PROTOCOL.md §9.2).  The empty string is the start.
"""

from __future__ import annotations

from crypto import encoding
from sync.messages import b64decode, b64encode

__all__ = ["CursorError", "decode_cursor", "encode_cursor"]

EPOCH_LENGTH = 16


class CursorError(ValueError):
    """The cursor is not one any Sealbox server issued."""


def encode_cursor(epoch: bytes, server_seq: int) -> str:
    if len(epoch) != EPOCH_LENGTH or server_seq < 0:
        raise ValueError("bad epoch or sequence")
    raw = encoding.encode([epoch, server_seq])
    return b64encode(raw)


def decode_cursor(cursor: str) -> tuple[bytes, int] | None:
    """(epoch, server_seq), or None for the start. Raises `CursorError`."""
    if cursor == "":
        return None
    if len(cursor) > 100:
        raise CursorError("cursor too long")
    try:
        value = encoding.decode(b64decode(cursor))
    except ValueError as exc:
        raise CursorError("cursor is not valid") from exc
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], bytes)
        or len(value[0]) != EPOCH_LENGTH
        or type(value[1]) is not int
        or value[1] < 0
    ):
        raise CursorError("cursor is not valid")
    return value[0], value[1]
