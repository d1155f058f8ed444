"""A field device's signing-key rotation request (PROTOCOL §19.7).

Theory of operation:
* A device that suspects its signing key was copied draws a new key and signs, with *both*
  keys, a request to replace the old one: a signed document (PROTOCOL §3, purpose
  ``"rotation"``, tag ``sealbox/v1/sig/rotation``) signed by the **old** key, over
  ``{v, s, o: org, i: old device id, k: new Ed25519 key, p: proof}``, where the proof is the
  **new** key's signature, with the same tag, over the canonical CBOR of that body without
  ``p`` (a body of another shape, which no document of this purpose can have).
* The old key's signature says the device asks; the new key's proves the requester holds
  the new key (a request cannot name a key its sender does not hold).
* A coordinator applies a request in a roster version that adds the new key with the old
  member's role and revokes the old id at its watermark (§5.5). Whoever stole the old key
  can ask too: two requests naming different new keys for one old id are applied by nobody
  (`conflicting`), and the coordinator compares the new key's fingerprint out of band.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crypto import (
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    encoding,
    sign_document,
)
from crypto.suite import PROTOCOL_VERSION, SUITE_ID

__all__ = ["MAX_ROTATION_BYTES", "RotationError", "RotationRequest", "conflicting"]

MAX_ROTATION_BYTES = 1024
_KEYS = frozenset("vsoikp")


class RotationError(VerificationFailed):
    """A rotation request that is malformed or whose signatures do not verify."""

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RotationRequest:
    org_id: bytes
    old_device: bytes
    new_key: VerifyKey
    document: bytes

    @property
    def new_device(self) -> bytes:
        return self.new_key.key_id

    @classmethod
    def make(cls, *, org_id: bytes, old_key: SigningKey, new_key: SigningKey) -> RotationRequest:
        claim = {
            "v": PROTOCOL_VERSION,
            "s": SUITE_ID,
            "o": org_id,
            "i": old_key.verify_key.key_id,
            "k": new_key.verify_key.raw,
        }
        proof = new_key.sign(Purpose.ROTATION_SIGNATURE, encoding.encode(claim))
        document = sign_document(Purpose.ROTATION_SIGNATURE, {**claim, "p": proof}, old_key)
        return cls.verify(document.to_bytes(), old_key.verify_key, org_id=org_id)

    @classmethod
    def peek(cls, document: bytes) -> tuple[bytes, bytes]:
        """(org id, old device id) of a request, unverified: which key to verify it with."""
        raw = cls._body(document)[1]
        return raw["o"], raw["i"]

    @staticmethod
    def _body(document: bytes) -> tuple[SignedDocument, dict[str, Any]]:
        if not isinstance(document, bytes) or len(document) > MAX_ROTATION_BYTES:
            raise RotationError(f"a rotation request is at most {MAX_ROTATION_BYTES} bytes")
        try:
            signed = SignedDocument.parse(document, Purpose.ROTATION_SIGNATURE)
            raw = signed.unverified_body()
        except VerificationFailed:
            raise RotationError("not a signed rotation request") from None
        ok = (
            isinstance(raw, dict)
            and set(raw) == _KEYS
            and raw["v"] == PROTOCOL_VERSION
            and type(raw["v"]) is int
            and raw["s"] == SUITE_ID
            and type(raw["s"]) is int
            and all(isinstance(raw[k], bytes) for k in "oikp")
            and (len(raw["o"]), len(raw["i"]), len(raw["k"]), len(raw["p"])) == (16, 16, 32, 64)
        )
        if not ok:
            raise RotationError("a rotation request body is {v, s, o, i, k, p}")
        return signed, raw

    @classmethod
    def verify(cls, document: bytes, old_key: VerifyKey, *, org_id: bytes) -> RotationRequest:
        """Check both signatures, the organisation and that ``old_key`` is the old device's.

        Raises:
            RotationError: with the reason.
        """
        signed, raw = cls._body(document)
        if raw["o"] != org_id:
            raise RotationError("the request is for another organisation")
        if raw["i"] != old_key.key_id or signed.signer != old_key.key_id:
            raise RotationError("the request is not signed by the device it names")
        try:
            signed.verify(old_key)
        except VerificationFailed:
            raise RotationError("the old key's signature does not verify") from None
        assert isinstance(raw["k"], bytes) and isinstance(raw["p"], bytes)
        new_key = VerifyKey(raw["k"])
        claim = {k: v for k, v in raw.items() if k != "p"}
        try:
            new_key.verify(Purpose.ROTATION_SIGNATURE, encoding.encode(claim), raw["p"])
        except VerificationFailed:
            raise RotationError("the new key's proof does not verify") from None
        if new_key.key_id == old_key.key_id:
            raise RotationError("the new key is the old key")
        return cls(org_id, old_key.key_id, new_key, document)


def conflicting(requests: list[RotationRequest]) -> set[bytes]:
    """Old device ids with verified requests naming different new keys: apply none of them."""
    seen: dict[bytes, set[bytes]] = {}
    for request in requests:
        seen.setdefault(request.old_device, set()).add(request.new_device)
    return {old for old, new in seen.items() if len(new) > 1}
