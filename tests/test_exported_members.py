"""The public surface of `crypto` is exactly `crypto.__all__` (after httpx's test of the same name).

Adding or removing a public name is a deliberate act: update EXPECTED here in the same commit.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import crypto

EXPECTED = {
    "DEFAULT_KDF",
    "PROTOCOL_VERSION",
    "SUITE_ID",
    "ChainKey",
    "Envelope",
    "Header",
    "KdfParams",
    "KemPrivateKey",
    "KemPublicKey",
    "KeyCommitmentMismatch",
    "MalformedEnvelope",
    "MessageKey",
    "Purpose",
    "SignedDocument",
    "SigningKey",
    "VerificationFailed",
    "VerifyKey",
    "accept_chain_key",
    "digest",
    "key_id",
    "manifest_of",
    "message_key_at",
    "new_attachment_key",
    "open_chunks",
    "open_revision",
    "open_sender_key",
    "parse_envelope",
    "seal_chunks",
    "seal_revision",
    "seal_sender_key",
    "sign_document",
    "unwrap_chain_key",
    "unwrap_keyfile",
    "wrap_chain_key",
    "wrap_keyfile",
}


def test_crypto_all_is_the_expected_surface() -> None:
    assert set(crypto.__all__) == EXPECTED
    assert len(crypto.__all__) == len(set(crypto.__all__))


def test_every_public_attribute_is_exported() -> None:
    public = {
        name
        for name, value in vars(crypto).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    assert public == set(crypto.__all__)


def test_every_exported_name_exists() -> None:
    for name in crypto.__all__:
        assert getattr(crypto, name) is not None


def test_every_crypto_module_declares_all_and_it_resolves() -> None:
    for info in pkgutil.iter_modules(crypto.__path__):
        module = importlib.import_module(f"crypto.{info.name}")
        assert hasattr(module, "__all__"), f"crypto.{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"crypto.{info.name}.__all__ lists missing {name}"


def test_single_failure_type() -> None:
    """The recipe has one opaque failure; its structural subclass is still that failure."""
    assert issubclass(crypto.MalformedEnvelope, crypto.VerificationFailed)
    assert str(crypto.VerificationFailed()) == "verification failed"
