"""Request authentication: RFC 9421 HTTP Message Signatures, pure helpers for both peers.

Theory of operation (docs/PROTOCOL.md §7.3):
* Every request except ``POST /v1/orgs`` (admin token), ``POST .../enroll``
  (self-signed enrollment + invite secret) and the unauthenticated
  ``GET /v1/server``/health routes is signed by the caller's device key with
  Ed25519 (``alg="ed25519"``), label ``sbx``, covering ``@method``,
  ``@target-uri`` and, whenever there is a body, ``content-digest`` (RFC 9530,
  sha-256).  Parameters: ``created`` (unix seconds), ``nonce`` (16-64 chars of
  base64url), ``keyid`` (the device id in lowercase hex), ``tag="sealbox-v1"``.
* The verifier checks the signature, the digest, that ``created`` lies within
  ``window`` seconds of ``now`` (either side: field clocks are wrong by hours),
  and returns (device id, created, nonce).  Replay detection (each (keyid,
  nonce) once per window) is the caller's job, since it needs storage.
* Time comes in as an argument; nothing here reads the clock or the network.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from crypto import SigningKey, VerifyKey

__all__ = [
    "SIGNATURE_LABEL",
    "SIGNATURE_TAG",
    "AuthError",
    "VerifiedRequest",
    "peek_key_id",
    "sign_request",
    "verify_request",
]

SIGNATURE_TAG = "sealbox-v1"
SIGNATURE_LABEL = "sbx"
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_KEYID_RE = re.compile(r'keyid="([0-9a-f]{32})"')


class AuthError(Exception):
    """The request signature does not authenticate. ``reason`` is one of
    ``missing``, ``invalid``, ``expired``, ``unknown_key``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    device_id: bytes
    created: int
    nonce: str


class _Fields:
    """Ordered header field lines (name, value), lower-case names, writable for signing."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.pairs = [(k.lower(), v) for k, v in pairs]

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)

    def __iter__(self) -> Any:
        return iter(dict.fromkeys(k for k, _ in self.pairs))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k == name.lower() for k, _ in self.pairs)

    def __getitem__(self, name: str) -> str:
        values = [v for k, v in self.pairs if k == name.lower()]
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        self.__delitem__(name)
        self.pairs.append((name.lower(), value))

    def __delitem__(self, name: str) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k != name.lower()]


@dataclass
class _Message:
    method: str
    url: str
    headers: _Fields


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(
        self,
        *,
        private: SigningKey | None = None,
        resolve: Callable[[bytes], VerifyKey | None] | None = None,
    ) -> None:
        self._private = private
        self._resolve = resolve

    def resolve_private_key(self, key_id: str) -> ed25519.Ed25519PrivateKey:
        assert self._private is not None
        return ed25519.Ed25519PrivateKey.from_private_bytes(self._private.private_bytes())

    def resolve_public_key(self, key_id: str) -> ed25519.Ed25519PublicKey | None:
        assert self._resolve is not None
        if not re.fullmatch(r"[0-9a-f]{32}", key_id):
            raise AuthError("invalid", "keyid must be a device id in lowercase hex")
        key = self._resolve(bytes.fromhex(key_id))
        if key is None:
            raise AuthError("unknown_key", "the signing device is not known to this organisation")
        return ed25519.Ed25519PublicKey.from_public_bytes(key.raw)


class _Verifier(HTTPMessageVerifier):
    """The library's verifier with an injected clock and a symmetric window."""

    def __init__(self, *, now: int, window: int, resolver: HTTPSignatureKeyResolver) -> None:
        super().__init__(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
        self._now = now
        self._window = window

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        created = sig_input.params.get("created")
        if type(created) is not int:
            raise InvalidSignature('the "created" parameter is required')
        if abs(created - self._now) > self._window:
            raise AuthError("expired", "the signature was created outside the replay window")
        if "expires" in sig_input.params:
            raise InvalidSignature('the "expires" parameter is not used by this protocol')


def sign_request(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None,
    key: SigningKey,
    created: int,
    nonce: str,
) -> dict[str, str]:
    """Return the headers to add to a request: Signature-Input, Signature, Content-Digest.

    ``url`` is the full target URI as sent (scheme, host, port, path, query).
    ``body`` None or empty means no body (no digest is covered).
    """
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 16-64 base64url characters")
    fields = _Fields((headers or {}).items())
    message = _Message(method.upper(), url, fields)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(private=key)
    )
    signer.sign(
        message,
        key_id=key.verify_key.key_id.hex(),
        created=datetime.datetime.fromtimestamp(created, tz=datetime.UTC),
        nonce=nonce,
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=("@method", "@target-uri"),
        body=body if body else None,
    )
    out = {}
    for name in ("content-digest", "signature-input", "signature"):
        if name in fields:
            out[name.title()] = fields[name]
    return out


def peek_key_id(headers: Mapping[str, str]) -> bytes | None:
    """The (unverified) device id named by a request's Signature-Input, to find its org row."""
    value = headers.get("signature-input")
    if value is None:
        return None
    match = _KEYID_RE.search(value)
    return bytes.fromhex(match.group(1)) if match else None


def verify_request(
    *,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    resolve_key: Callable[[bytes], VerifyKey | None],
    now: int,
    window: int,
) -> VerifiedRequest:
    """Verify a signed request. Raises `AuthError` (reason says which kind of failure)."""
    fields = _Fields(headers)
    if "signature-input" not in fields or "signature" not in fields:
        raise AuthError("missing", "this request must carry an RFC 9421 signature")
    message = _Message(method.upper(), url, fields)
    verifier = _Verifier(now=now, window=window, resolver=_OneKey(resolve=resolve_key))
    required = ("@method", "@target-uri", "content-digest") if body else ("@method", "@target-uri")
    try:
        results = verifier.verify(
            message,
            max_age=None,
            expect_tag=SIGNATURE_TAG,
            require_components=required,
            body=body,
        )
    except AuthError:
        raise
    except (InvalidSignature, HTTPMessageSignaturesException, ValueError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, AuthError):
            raise cause from None
        raise AuthError("invalid", "the request signature does not verify") from None
    if len(results) != 1:
        raise AuthError("invalid", "exactly one sealbox-v1 signature is expected")
    params = results[0].parameters
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise AuthError("invalid", "the signature needs a nonce of 16-64 base64url characters")
    if params.get("alg") not in (None, "ed25519"):
        raise AuthError("invalid", "only ed25519 signatures are accepted")
    return VerifiedRequest(
        device_id=bytes.fromhex(str(params["keyid"])),
        created=int(params["created"]),
        nonce=nonce,
    )
