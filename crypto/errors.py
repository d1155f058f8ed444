"""The one failure `crypto` raises for anything that does not verify or open."""

from __future__ import annotations

__all__ = ["VerificationFailed"]


class VerificationFailed(Exception):
    """Opaque: a signature, tag, hash, padding, format or suite check failed.

    Deliberately carries no detail, so callers cannot build an oracle on which
    check failed, and never accompanies partial plaintext.
    """

    def __init__(self) -> None:
        super().__init__("verification failed")
