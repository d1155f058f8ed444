"""The one failure `crypto` raises for anything that does not verify or open."""

from __future__ import annotations

__all__ = ["KeyCommitmentMismatch", "VerificationFailed"]


class VerificationFailed(Exception):
    """Opaque: a signature, tag, hash, padding, format or suite check failed.

    Deliberately carries no detail, so callers cannot build an oracle on which
    check failed, and never accompanies partial plaintext.
    """

    def __init__(self) -> None:
        super().__init__("verification failed")


class KeyCommitmentMismatch(VerificationFailed):
    """A key envelope's wrap opened for this reader, but to a chain key its signed header
    does not commit to (docs/PROTOCOL.md §4.3): its author gave different coordinators
    different keys. Still a `VerificationFailed`, so callers that catch only that stay
    safe; no key and no plaintext accompanies it.

    Telling it apart leaks nothing an attacker can use: only the author, who chose the
    keys, can produce it, and it is raised after the signature and the HPKE tag verified.
    """
