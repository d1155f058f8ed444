"""RFC 9421 request signatures (sync/auth.py; docs/PROTOCOL.md §7.3)."""

from __future__ import annotations

import pytest

from crypto import SigningKey
from sync.auth import SIGNATURE_TAG, AuthError, peek_key_id, sign_request, verify_request

KEY = SigningKey(bytes(range(32)))
URL = "https://sealbox.example/v1/orgs/AAAAAAAAAAAAAAAAAAAAAA/push"
BODY = b'{"envelopes":[]}'
NOW = 1_800_000_000
NONCE = "n0nce-n0nce-n0nce"


def signed(
    body: bytes = BODY, url: str = URL, created: int = NOW, nonce: str = NONCE
) -> dict[str, str]:
    return sign_request(method="POST", url=url, body=body, key=KEY, created=created, nonce=nonce)


def verify(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    url: str = URL,
    method: str = "POST",
    now: int = NOW,
):
    return verify_request(
        method=method,
        url=url,
        headers=list(headers.items()),
        body=body,
        resolve_key=lambda d: KEY.verify_key if d == KEY.verify_key.key_id else None,
        now=now,
        window=86400,
    )


def test_signature_covers_method_target_digest_and_protocol_tag() -> None:
    headers = signed()
    assert headers["Signature-Input"].startswith('sbx=("@method" "@target-uri" "content-digest")')
    assert f'tag="{SIGNATURE_TAG}"' in headers["Signature-Input"]
    assert f'keyid="{KEY.verify_key.key_id.hex()}"' in headers["Signature-Input"]
    assert headers["Content-Digest"].startswith("sha-256=:")
    result = verify(headers)
    assert (result.device_id, result.created, result.nonce) == (KEY.verify_key.key_id, NOW, NONCE)
    assert peek_key_id({"signature-input": headers["Signature-Input"]}) == KEY.verify_key.key_id


def test_signing_is_deterministic_for_fixed_inputs() -> None:
    # Ed25519 is deterministic: fixed key, time and nonce give fixed bytes (a vector).
    assert signed() == signed()


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"envelopes":["AA"]}'},
        {"url": URL.replace("push", "changes")},
        {"url": URL.replace("https", "http")},
        {"method": "PUT"},
    ],
)
def test_any_change_to_a_covered_component_fails(change) -> None:
    with pytest.raises(AuthError) as err:
        verify(signed(), **change)
    assert err.value.reason == "invalid"


def test_window_tolerates_hours_of_skew_either_way_but_not_more() -> None:
    verify(signed(created=NOW - 23 * 3600))
    verify(signed(created=NOW + 23 * 3600))
    for created in (NOW - 25 * 3600, NOW + 25 * 3600):
        with pytest.raises(AuthError) as err:
            verify(signed(created=created))
        assert err.value.reason == "expired"


def test_missing_unknown_key_and_stripped_digest() -> None:
    with pytest.raises(AuthError) as err:
        verify({})
    assert err.value.reason == "missing"
    other = SigningKey.generate()
    foreign = sign_request(method="POST", url=URL, body=BODY, key=other, created=NOW, nonce=NONCE)
    with pytest.raises(AuthError) as err:
        verify(foreign)
    assert err.value.reason == "unknown_key"
    headers = signed()
    del headers["Content-Digest"]
    with pytest.raises(AuthError):
        verify(headers)


def test_bodyless_requests_need_no_digest_but_a_body_cannot_be_added() -> None:
    headers = sign_request(method="GET", url=URL, body=None, key=KEY, created=NOW, nonce=NONCE)
    assert "Content-Digest" not in headers
    verify(headers, method="GET", body=b"")
    with pytest.raises(AuthError):
        verify(headers, method="GET", body=b"smuggled")


def test_nonce_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        signed(nonce="short")
