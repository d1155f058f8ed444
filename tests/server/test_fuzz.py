"""Fuzzing from the OpenAPI schema (schemathesis): no 500, every response conforms.

Requests are signed by the organisation's coordinator (a requests ``auth`` hook
signs the exact bytes schemathesis sends), so the fuzzer reaches the handlers
behind the signature check, not only the 401 path.  A bounded run is part of
``make test``; a longer one is marked slow (docs/PROTOCOL.md §10: never a 500
on bad input).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import cbor2
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from server_api import ADMIN_TOKEN, Api, create_org
from starlette.testclient import TestClient

from crypto import SigningKey
from server import migrate
from server.app import create_app
from server.db import make_engine
from server.settings import Settings
from sync.auth import sign_request


class SignedAuth(requests.auth.AuthBase):
    """Sign whatever schemathesis finally sends (method, URL, body bytes)."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        if not isinstance(body, bytes):
            return r  # streamed bodies: leave unsigned (401 is a valid answer too)
        try:
            headers = sign_request(
                method=r.method or "GET",
                url=r.url or "",
                body=body,
                key=self.key,
                created=int(time.time()),
                nonce=secrets.token_urlsafe(16),
            )
        except Exception:  # a URL the signer cannot represent: send unsigned
            return r
        r.headers.update(headers)
        return r


@schemathesis.serializer("application/cbor")
def _cbor(_ctx: object, value: object) -> bytes:
    """Push bodies may be CBOR (PROTOCOL §8.2): fuzz that decoder too."""
    return cbor2.dumps(value)


_DATA = Path(tempfile.mkdtemp(prefix="sealbox-fuzz-"))
atexit.register(shutil.rmtree, _DATA, True)
_ENGINE = make_engine(f"sqlite:///{_DATA / 'fuzz.db'}")
_APP = create_app(Settings(data_dir=_DATA, admin_token=ADMIN_TOKEN), engine=_ENGINE)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module")
def fuzz_target() -> tuple[SigningKey, str]:
    migrate.upgrade(_ENGINE)
    client = TestClient(_APP)  # no lifespan: schemathesis runs the app's lifespan itself
    org = create_org(Api(client))
    dev = org.add_device()
    dev.revision(org.roster, secrets.token_bytes(16), [], b"seed")
    assert org.push(dev, dev.sent).status_code == 200
    return org.coordinator, org.path


# Schema-valid is not semantically valid: a random base64url string is not a signed roster, and
# the server rightly answers 422. Every other check (no 5xx, status codes, response schemas,
# content types, headers) stays on.
_EXCLUDED = [schemathesis.checks.positive_data_acceptance]


def _aim_at_the_real_org(case, org_path: str) -> None:
    """Half of the positive cases target the real organisation (else all would be 404)."""
    meta = getattr(case, "_meta", None)
    positive = meta is not None and not meta.generation.mode.is_negative
    if positive and "org" in (case.path_parameters or {}) and secrets.randbelow(2):
        case.path_parameters["org"] = org_path.rsplit("/", 1)[1]


def _examples() -> int:
    return 15


@schema.parametrize()
@settings(max_examples=_examples(), deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_500s_and_conforms(case, fuzz_target) -> None:
    key, org_path = fuzz_target
    _aim_at_the_real_org(case, org_path)
    session = requests.Session()
    session.auth = SignedAuth(key)
    case.call_and_validate(session=session, excluded_checks=_EXCLUDED)


@pytest.mark.slow
@schema.parametrize()
@settings(
    # ~20 operations: keep the long run to a share of SEALBOX_SLOW_BUDGET_SECONDS.
    max_examples=int(
        os.environ.get(
            "SEALBOX_FUZZ_EXAMPLES",
            str(max(30, min(300, int(os.environ.get("SEALBOX_SLOW_BUDGET_SECONDS", "600")) // 10))),
        )
    ),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz_long(case, fuzz_target) -> None:
    key, org_path = fuzz_target
    _aim_at_the_real_org(case, org_path)
    session = requests.Session()
    session.auth = SignedAuth(key)
    case.call_and_validate(session=session, excluded_checks=_EXCLUDED)
